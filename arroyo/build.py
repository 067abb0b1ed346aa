"""Building blocks from a validated configuration (:mod:`arroyo.config`): operators
imported, listeners, publishers and dead letters opened with their codecs and schemas,
exactly-once set up. Nothing connects yet: that is :meth:`Block.run`'s business.

Every error is a :class:`~arroyo.errors.ConfigError` (or, for an operator, an
ImportError or TypeError) of one line naming the file, the block and the key.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from arroyo.brokers import open_listener, open_publisher, parse_url
from arroyo.codec import Codec
from arroyo.config import (
    BlockConfig,
    Endpoint,
    OperatorSpec,
    PipelineConfig,
    RegistrySettings,
    load_config,
)
from arroyo.errors import ArroyoError, ConfigError
from arroyo.parsers import make_parser, needs_arroyo_messages
from arroyo.plugins import import_object
from arroyo.registry import Registry
from arroyo.runtime.block import Block
from arroyo.runtime.listener import Listener
from arroyo.runtime.operator import FunctionOperator, Operator, Passthrough
from arroyo.runtime.parser import AvroParser
from arroyo.runtime.publisher import Publisher
from arroyo.schema import SchemaStore, load

BUILTIN_OPERATORS: dict[str, Callable[[], Operator]] = {"passthrough": Passthrough}
"""Operators usable by short name in a config."""


@dataclass
class Built:
    """A block ready to run, built from its config (nothing connected yet)."""

    config: BlockConfig
    block: Block


def make_operator(spec: OperatorSpec) -> Operator:
    """The operator a spec names. Raises ImportError, TypeError or ConfigError with a
    message of one line (a module with a syntax error, or one that raises when it is
    imported, is an ImportError saying so)."""
    if spec.class_ in BUILTIN_OPERATORS:
        return BUILTIN_OPERATORS[spec.class_](**spec.kwargs)
    try:
        target = import_object(spec.class_)
    except SyntaxError as exc:
        where = f"{exc.filename}, line {exc.lineno}" if exc.filename else f"line {exc.lineno}"
        raise ImportError(f"cannot import {spec.class_!r}: {where}: {exc.msg}") from None
    except (ImportError, AttributeError) as exc:
        raise ImportError(f"cannot import {spec.class_!r}: {exc}") from None
    except Exception as exc:
        raise ImportError(
            f"cannot import {spec.class_!r}: importing it raised {type(exc).__name__}: {exc}"
        ) from None
    if inspect.isclass(target) and issubclass(target, Operator):
        try:
            inspect.signature(target).bind(**spec.kwargs)
        except TypeError as exc:
            raise TypeError(f"{spec.class_} does not accept these kwargs: {exc}") from None
        try:
            made: Operator = target(**spec.kwargs)
        except Exception as exc:
            raise ConfigError(
                f"{spec.class_}(**{spec.kwargs!r}) raised {type(exc).__name__}: {exc}"
            ) from None
        return made
    if callable(target) and not inspect.isclass(target):
        if spec.kwargs:
            raise TypeError(f"{spec.class_} is a function: it takes no kwargs")
        return FunctionOperator(target, executor=spec.executor)
    raise TypeError(f"{spec.class_} is neither an Operator subclass nor a function")


def _codec(
    endpoint: Endpoint,
    registry: RegistrySettings | None,
    base: Path,
    lenient: bool = False,
    lazy: bool = False,
) -> Codec:
    def schema_path(path: str) -> Path:
        candidate = Path(path)
        return candidate if candidate.is_absolute() else base / candidate

    schema = load(schema_path(endpoint.schema_)) if endpoint.schema_ else None
    known = endpoint.schemas
    if not known and endpoint.schema_:
        known = [str(schema_path(endpoint.schema_).parent)]
    store = SchemaStore([load(path) for path in _schema_files(known, schema_path)])
    settings = endpoint.registry or registry
    client = None
    subject = None
    if settings is not None:
        client = Registry(settings.url, **dict(settings.model_extra or {}))
        subject = settings.subject
    if subject is None and settings is not None:
        # TopicNameStrategy: "<topic, stream or queue>-value"
        url = parse_url(endpoint.url)
        subject = f"{url.query.get('queue') or url.path or 'arroyo'}-value"
    return Codec(
        writer=schema,
        reader=schema,
        store=store,
        registry=client,
        subject=subject,
        lenient=lenient,
        lazy=lazy,
    )


def _schema_files(entries: list[str], resolve: Callable[[str], Path]) -> list[Path]:
    """The ``.avsc`` files that ``schemas:`` names: files as given, folders by their
    ``*.avsc`` files (in name order)."""
    files: list[Path] = []
    for entry in entries:
        path = resolve(entry)
        files.extend(sorted(path.glob("*.avsc")) if path.is_dir() else [path])
    return files


def _parser_name(endpoint: Endpoint) -> str:
    return endpoint.parser or parse_url(endpoint.url).query.get("parser") or "arroyo"


def _listener(endpoint: Endpoint, codec: Codec) -> Listener:
    url = parse_url(endpoint.url)
    name = _parser_name(endpoint)
    url.query.pop("parser", None)
    options = endpoint.options
    parser_options = options.pop("parser_options", None) or {}
    parser = AvroParser(codec) if name == "arroyo" else make_parser(name, **parser_options)
    return open_listener(url, options, parser)


def exactly_once(
    url: str, listener: Listener, publishers: list[Publisher], dead_letter: Publisher | None
) -> None:
    """Set up exactly-once delivery between a listener (read from ``url``) and its
    publishers, with the hook its connector declares (Kafka: transactions); ConfigError
    when the connector has none or the publishers cannot take part."""
    from arroyo.brokers.connector import CONNECTORS

    hook = CONNECTORS.for_scheme(parse_url(url).scheme).exactly_once
    if hook is None:
        raise ConfigError(
            f"exactly-once is not available for {listener.name}: only Kafka -> Kafka blocks "
            "(Kafka transactions) have it"
        )
    hook(listener, publishers, dead_letter)


def build(
    config: PipelineConfig, source: str = "<config>", base: Path | None = None
) -> list[Built]:
    """Make every block: import operators, check URLs and options, load schemas.

    Nothing connects yet. Raises ConfigError naming the file, block and key.
    """
    base = base or Path.cwd()
    if str(base) not in sys.path:
        sys.path.insert(0, str(base))
    built = []
    names = [b.name for b in config.blocks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{source}: block names must be unique; repeated: {duplicates}")
    for index, block in enumerate(config.blocks):
        where = f"{source}: blocks[{index}] ({block.name})"
        lenient = block.schema_policy == "pass"

        def endpoint_error(key: str, exc: Exception, where: str = where) -> ConfigError:
            return ConfigError(f"{where}.{key}: {exc}")

        try:
            lazy = block.check == "lazy"
            if lazy:
                needs_arroyo_messages(_parser_name(block.listener))
            codec = _codec(block.listener, config.registry, base, lenient, lazy)
            listener = _listener(block.listener, codec)
        except (ArroyoError, OSError) as exc:
            raise endpoint_error("listener", exc) from None
        publishers: list[Publisher] = []
        for i, endpoint in enumerate(block.publishers):
            try:
                codec = _codec(endpoint, config.registry, base, lenient)
                publishers.append(open_publisher(endpoint.url, endpoint.options, codec))
            except (ArroyoError, OSError) as exc:
                raise endpoint_error(f"publishers[{i}]", exc) from None
        dead_letter = None
        if block.dead_letter is not None:
            try:
                codec = _codec(block.dead_letter, config.registry, base)
                dead_letter = open_publisher(
                    block.dead_letter.url, block.dead_letter.options, codec
                )
            except (ArroyoError, OSError) as exc:
                raise endpoint_error("dead_letter", exc) from None
        try:
            operator = make_operator(block.operator)
        except (ImportError, TypeError, ArroyoError) as exc:
            raise endpoint_error("operator", exc) from None
        if block.guarantee == "exactly-once":
            try:
                exactly_once(block.listener.url, listener, publishers, dead_letter)
            except ArroyoError as exc:
                raise endpoint_error("guarantee", exc) from None
        built.append(
            Built(
                block,
                Block(
                    listener,
                    operator,
                    publishers,
                    name=block.name,
                    dead_letter=dead_letter,
                    queue_size=block.queue_size,
                    max_bytes=block.max_bytes,
                    concurrency=block.concurrency,
                    batch_size=block.batch_size,
                    retry=block.retry.policy(),
                    publish_retry=block.publish_retry.policy(),
                    max_deliveries=block.max_deliveries,
                    grace_period=block.grace_period,
                    operator_timeout=block.operator.timeout,
                    on_invalid="drop" if block.schema_policy == "drop" else "dead-letter",
                    frame_accounting=block.frame_accounting,
                    lag_interval=block.lag_interval,
                ),
            )
        )
    return built


def build_file(path: str | Path) -> list[Built]:
    """Load, validate and build a config file (its folder becomes importable)."""
    path = Path(path)
    return build(load_config(path), str(path), path.resolve().parent)
