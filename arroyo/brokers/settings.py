"""One typed model of a connector's options.

Each broker package declares its options in ``settings.py`` as a subclass of
:class:`Settings`: a field per option, with its type, default and constraints written
there and nowhere else. The URL's query and the YAML options next to it fill the model
(query values are strings: they are converted to the field's type); an unknown option
is a ConfigError that names it, the broker, a close match and the known ones. Options a
client library takes as they are (Kafka's librdkafka keys) pass through when the model
says so (:meth:`Settings.passes_through`).

The options most connectors share are declared once here: :class:`ConnectSettings`
(``connect_timeout``) and :class:`TlsSettings` (``ssl_ca``, ``ssl_cert``, ``ssl_key``,
``ssl_verify``); :class:`FormatSettings` (``format``, ``format_options``) for a
publisher that can write a wire format other than Arroyo's (Kafka's).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from arroyo.brokers import BrokerURL, Tls
from arroyo.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    from arroyo.formats import WireFormat

_SECRET_WORDS = ("password", "secret", "token")
"""An option whose name has one of these never has its value shown in an error."""


class Settings(BaseModel):
    """A connector's options (subclass it; see the module documentation).

    ``broker``: the broker's name in errors (``kafka``). Options are read-only once made.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    broker: ClassVar[str] = "connector"

    @classmethod
    def passes_through(cls, key: str) -> bool:
        """True for an option that is not the model's but goes to the client library as
        it is (none by default)."""
        return False

    @classmethod
    def parse(
        cls, url: BrokerURL, options: Mapping[str, Any] | None = None
    ) -> tuple[Self, dict[str, Any]]:
        """The model from ``url``'s query and ``options`` (options win), and the options
        that pass through to the client. Raises ConfigError naming each bad option."""
        merged: dict[str, Any] = {**url.query, **(options or {})}
        passing = {k: v for k, v in merged.items() if cls.passes_through(k)}
        own = {k: v for k, v in merged.items() if k not in passing}
        try:
            return cls.model_validate(own), passing
        except ValidationError as exc:
            raise ConfigError(cls._explain(url, exc)) from None

    @classmethod
    def from_url(cls, url: BrokerURL, options: Mapping[str, Any] | None = None) -> Self:
        """:meth:`parse` for a model that passes nothing through (an option that would
        pass through is still refused)."""
        model, passing = cls.parse(url, options)
        if passing:
            raise ConfigError(cls._unknown(url, sorted(passing)))
        return model

    @classmethod
    def known(cls) -> list[str]:
        """The names of every option (as written in a URL or YAML)."""
        return sorted(field.alias or name for name, field in cls.model_fields.items())

    @classmethod
    def _unknown(cls, url: BrokerURL, keys: list[str]) -> str:
        known = cls.known()
        close = [m for k in keys for m in difflib.get_close_matches(k, known, n=1)]
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        return (
            f"{url}: unknown {cls.broker} option(s) {', '.join(map(repr, keys))}{hint}; "
            f"known: {', '.join(known) or '(none)'}"
        )

    @classmethod
    def _explain(cls, url: BrokerURL, exc: ValidationError) -> str:
        unknown = sorted(
            str(error["loc"][0]) for error in exc.errors() if error["type"] == "extra_forbidden"
        )
        if unknown:
            return cls._unknown(url, unknown)
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"]) or "options"
            value = error.get("input")
            secret = any(word in key.lower() for word in _SECRET_WORDS)
            shown = "" if secret or isinstance(value, Mapping) else f", got {value!r}"
            problems.append(f"{cls.broker} option {key!r}: {error['msg'].lower()}{shown}")
        return f"{url}: " + "; ".join(problems)


class ConnectSettings(Settings):
    """``connect_timeout``: seconds a connector keeps trying to reach its broker when it
    starts (see :mod:`arroyo.brokers.connecting`)."""

    connect_timeout: float = Field(default=10.0, gt=0)


class TlsSettings(Settings):
    """TLS: ``ssl_ca`` (the CA file; None: the system's CAs), ``ssl_cert`` and ``ssl_key``
    (a client certificate), ``ssl_verify`` (check the server's certificate)."""

    ssl_ca: str | None = None
    ssl_cert: str | None = None
    ssl_key: str | None = None
    ssl_verify: bool = True

    def tls(self, url: BrokerURL, tls_scheme: str) -> Tls | None:
        """The TLS settings when ``url`` has the ``tls_scheme`` (``rediss``, ``amqps``);
        else None, and ssl_* options are a ConfigError."""
        if not url.scheme.startswith(tls_scheme):
            if self.ssl_ca or self.ssl_cert or self.ssl_key:
                raise ConfigError(f"{url}: ssl_* options need TLS (the {tls_scheme}:// scheme)")
            return None
        return Tls(self.ssl_ca, self.ssl_cert, self.ssl_key, self.ssl_verify)


class FormatSettings(Settings):
    """``format``: write each message in this wire format (:mod:`arroyo.formats`: ``ess``,
    ``bluesky-kafka``, or one registered under ``arroyo.formats``) instead of Arroyo's
    own framing (``arroyo``, the default); ``format_options``: the format's options
    (YAML only: a map). Dead letters keep Arroyo's own framing whatever the format."""

    format: str = "arroyo"
    format_options: dict[str, Any] = Field(default_factory=dict)

    def wire_format(self, url: BrokerURL) -> WireFormat | None:
        """The format, made now (None for Arroyo's own). Raises ConfigError naming the
        option for an unknown format or options it does not take, MissingDependencyError
        (naming the extra) when its package is not installed."""
        from arroyo.formats import available, make_format

        if self.format == "arroyo":
            if self.format_options:
                raise ConfigError(
                    f"{url}: {self.broker} option 'format_options' needs a 'format' "
                    "(Arroyo's own framing takes no options)"
                )
            return None
        known = ["arroyo", *available()]
        if self.format not in known:
            close = difflib.get_close_matches(self.format, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{url}: {self.broker} option 'format': unknown format {self.format!r}{hint}; "
                f"known: {', '.join(known)}"
            )
        try:
            return make_format(self.format, **self.format_options)
        except MissingDependencyError as exc:
            raise MissingDependencyError(f"{url}: {exc}") from None
        except ConfigError as exc:
            raise ConfigError(f"{url}: {self.broker} option 'format': {exc}") from None
