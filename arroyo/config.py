"""Pipeline configuration: YAML, validated completely before anything starts.

::

    registry: {url: "http://127.0.0.1:8081/apis/ccompat/v7"}   # optional, for all blocks
    blocks:
      - name: workers
        listener: kafka://127.0.0.1:9092/frames?group=workers  # URL, or {url: ..., <options>}
        operator: mypackage.ops:Normalize                      # or {class: ..., kwargs: {...}}
        publishers: [redis://127.0.0.1:6379/results]
        dead_letter: kafka://127.0.0.1:9092/frames.dlq
        concurrency: 4

An operator given as a mapping may set ``timeout`` (seconds): a call that takes longer
fails, is retried, then dead-lettered. Strings may use ``${VAR}`` and
``${VAR:-default}``. Every error names the file, the block and the key.

This module reads and validates; :mod:`arroyo.build` makes the blocks (the folder of the
config file is importable there, so ``ops.py`` next to it can hold the operators).
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from arroyo.errors import ConfigError
from arroyo.runtime.lag import DEFAULT_INTERVAL
from arroyo.runtime.retry import RetryPolicy


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RegistrySettings(BaseModel):
    """A schema registry: ``url`` plus settings for confluent-kafka's client."""

    model_config = ConfigDict(extra="allow")
    url: str
    subject: str | None = None


class TopicSettings(_Strict):
    """``create:`` on a Kafka endpoint: its topic is created before start when missing
    (see :mod:`arroyo.brokers.kafka.admin`); None: the broker's default."""

    partitions: int | None = Field(default=None, ge=1)
    replication: int | None = Field(default=None, ge=1)
    config: dict[str, str | int | float | bool] = Field(default_factory=dict)


class Endpoint(BaseModel):
    """A listener or publisher: a URL, Arroyo's schema settings, and broker options.

    ``schema``: an ``.avsc`` file with the facility's Event metadata record (publishers
    write with it and refuse what does not conform; listeners resolve to it).
    ``schemas``: the writer schemas a listener knows besides its own (files or folders
    of ``.avsc`` files); by default, every ``.avsc`` file in the folder of ``schema``, so
    a reader whose schema sits beside the writer's newer version resolves its data.
    ``parser``: how a listener reads bytes (default ``arroyo``). Every other key goes to
    the broker connector.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    url: str
    schema_: str | None = Field(default=None, alias="schema")
    schemas: list[str] = Field(default_factory=list)
    registry: RegistrySettings | None = None
    parser: str | None = None
    create: TopicSettings | None = None  # Kafka: create the topic when it is missing

    @property
    def options(self) -> dict[str, Any]:
        """The broker options (every key that is not Arroyo's own)."""
        return dict(self.model_extra or {})


class OperatorSpec(_Strict):
    """``class``: ``module:attr`` (a class, or a function run in a pool) or a built-in name.
    ``timeout``: seconds a call may take; a longer one fails (retried, then dead-lettered)."""

    class_: str = Field(alias="class")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    executor: Literal["thread", "process"] = "thread"
    timeout: float | None = Field(default=None, gt=0)


class RetrySettings(_Strict):
    """How often to try (null: until it works) and how long to wait between tries."""

    attempts: int | None = 3
    initial: float = 0.1
    maximum: float = 5.0

    def policy(self) -> RetryPolicy:
        return RetryPolicy(self.attempts, self.initial, self.maximum)


class BlockConfig(_Strict):
    """One block: listener -> operator -> publishers (see :class:`~arroyo.runtime.Block`)."""

    name: str
    listener: Endpoint
    operator: OperatorSpec = Field(
        default_factory=lambda: OperatorSpec.model_validate({"class": "passthrough"})
    )
    publishers: list[Endpoint] = Field(default_factory=list)
    dead_letter: Endpoint | None = None
    concurrency: int = Field(default=1, ge=1)
    batch_size: int = Field(default=1000, ge=1)
    """At most this many messages per call of an operator's ``process_batch``."""
    queue_size: int = Field(default=1000, ge=1)
    max_bytes: int = Field(default=64 << 20, ge=1)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    publish_retry: RetrySettings = Field(default_factory=lambda: RetrySettings(attempts=None))
    max_deliveries: int | None = Field(default=5, ge=1)
    grace_period: float = Field(default=30.0, ge=0)
    guarantee: Literal["at-least-once", "exactly-once"] = "at-least-once"
    schema_policy: Literal["dead-letter", "drop", "pass"] = "dead-letter"
    check: Literal["full", "lazy"] = "full"
    """How much of each message the listener checks on arrival: ``full`` (all of it) or
    ``lazy`` (the framing and identity; an Event's other fields when first read:
    :mod:`arroyo.codec_lazy`). Only for Arroyo's own messages (``parser: arroyo``)."""
    frame_accounting: bool | None = None
    """Count each run's frames (see Block); default: on for instrument formats."""
    lag_interval: float | None = Field(default=DEFAULT_INTERVAL, gt=0)
    """Seconds between two refreshes of the lag and connection gauges (null: never)."""

    @field_validator("listener", "dead_letter", mode="before")
    @classmethod
    def _url_alone(cls, value: Any) -> Any:
        return {"url": value} if isinstance(value, str) else value

    @field_validator("publishers", mode="before")
    @classmethod
    def _urls_alone(cls, value: Any) -> Any:
        if isinstance(value, str | dict):
            value = [value]
        return [{"url": v} if isinstance(v, str) else v for v in value]

    @field_validator("operator", mode="before")
    @classmethod
    def _class_alone(cls, value: Any) -> Any:
        return {"class": value} if isinstance(value, str) else value


class PipelineConfig(_Strict):
    """A whole config file."""

    registry: RegistrySettings | None = None
    tracing: bool = False
    """OpenTelemetry tracing of every block (the extra ``otel``; :mod:`arroyo.runtime.tracing`)."""
    blocks: list[BlockConfig] = Field(min_length=1)


# -- loading ---------------------------------------------------------------------------

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


class _Unset(Exception):
    """An environment variable without a default is not set; ``path`` is where."""

    def __init__(self, name: str, path: tuple[Any, ...]) -> None:
        super().__init__(name)
        self.name = name
        self.path = path

    def explain(self, where: str) -> ConfigError:
        return ConfigError(
            f"{where}: environment variable ${{{self.name}}} is not set (no default): set "
            f"it, or give a default as in ${{{self.name}:-value}}"
        )


def expand(value: Any, where: str = "") -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of ``value``; a
    variable that is not set and has no default is a ConfigError naming ``where``."""
    try:
        return _expand(value, ())
    except _Unset as exc:
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.path)
        raise exc.explain(f"{where}{path}".lstrip(".") or "<config>") from None


def _expand(value: Any, path: tuple[Any, ...]) -> Any:
    if isinstance(value, str):

        def one(match: re.Match[str]) -> str:
            name, default = match["name"], match["default"]
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise _Unset(name, path)

        return _VAR.sub(one, value)
    if isinstance(value, list):
        return [_expand(v, (*path, i)) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _expand(v, (*path, k)) for k, v in value.items()}
    return value


def _location(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    out = ""
    node: Any = raw
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            item = node[part] if isinstance(node, list) and part < len(node) else None
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str) and out.startswith("blocks["):
                out += f" ({name})"
        else:
            out += f".{part}" if out else str(part)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return out


def _explain(exc: ValidationError, raw: dict[str, Any], source: str) -> ConfigError:
    lines = []
    for error in exc.errors():
        loc = tuple(p for p in error["loc"] if not str(p).startswith("function-"))
        where = _location(loc, raw)
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            key = str(loc[-1])
            known = _known_keys(loc[:-1])
            close = difflib.get_close_matches(key, known, n=1)
            message = f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
            message += f"; known keys: {', '.join(known)}"
        lines.append(f"{source}: {where}: {message}")
    return ConfigError("\n".join(lines))


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = PipelineConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        inner = [a for a in getattr(annotation, "__args__", (annotation,)) if a is not None]
        candidates = [a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            break
        model = candidates[0]
    return sorted(f.alias or name for name, f in model.model_fields.items())


_URL = re.compile(r"[A-Za-z][\w+.-]*://[^\s,\[\]{}'\"]*")


def _yaml_error(exc: yaml.YAMLError, text: str, source: str) -> ConfigError:
    """One line: where the YAML is broken and why, with a hint for the usual mistake (an
    unquoted URL with ``?`` inside ``[...]`` or ``{...}``)."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return ConfigError(f"{source}: not valid YAML: {' '.join(str(exc).split())}")
    mark = exc.problem_mark
    message = f"{source}: not valid YAML at line {mark.line + 1}, column {mark.column + 1}: "
    message += str(exc.problem)
    if exc.context and exc.context_mark is not None:
        message += f" ({exc.context} at line {exc.context_mark.line + 1})"
    lines = text.splitlines()
    line = lines[mark.line] if mark.line < len(lines) else ""
    if "got '?'" in str(exc.problem):
        url = next((m[0] for m in _URL.finditer(line) if m.start() <= mark.column <= m.end()), None)
        message += "; inside [...] or {...} a '?' must be quoted: write the URL in quotes, " + (
            f'as in "{url}"' if url else 'as in "kafka://HOST:9092/TOPIC?group=G"'
        )
    return ConfigError(message)


def parse_config(text: str, source: str = "<config>") -> PipelineConfig:
    """Parse and validate YAML text (structure only; see :func:`build` for the rest)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, source) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with a 'blocks' list at the top")
    try:
        raw = _expand(raw, ())
    except _Unset as exc:
        raise exc.explain(f"{source}: {_location(exc.path, raw)}") from None
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise _explain(exc, raw, source) from None


def load_config(path: str | Path) -> PipelineConfig:
    """Read, expand and validate a config file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    return parse_config(text, str(path))
