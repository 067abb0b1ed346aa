"""The exceptions Arroyo raises. Every one of them is an :class:`ArroyoError`."""

from __future__ import annotations


class ArroyoError(Exception):
    """Base class of every error Arroyo raises on purpose."""


class ConfigError(ArroyoError):
    """A configuration (YAML file, URL, option) is invalid. Raised before anything starts."""


class ConnectError(ArroyoError, ConnectionError):
    """A connector could not connect when it started: the broker did not answer within
    ``connect_timeout``, or refused the connection's settings (TLS, credentials).

    The message is one line: the URL (password hidden), what failed and, where one is
    known, what to change (``security.protocol=SSL``, ``rediss://``...).
    """


class MissingDependencyError(ArroyoError, ImportError):
    """An optional client library is not installed; the message names the extra to install."""


class PermanentError(ArroyoError):
    """Retrying cannot help: the message goes to the dead-letter destination at once."""


class DecodeError(PermanentError):
    """Bytes could not be turned into a message.

    Raised for unknown framing, an unknown writer schema (fingerprint or registry id), a
    writer schema that cannot be resolved to the reader's, and truncated or garbage bytes.
    The message says which of these it was.
    """


class EncodeError(PermanentError):
    """A message could not be encoded: a value Avro cannot carry, or a schema it breaks.

    ``path`` names the offending field (``metadata.energy``), when one is known.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class SchemaError(ArroyoError):
    """An Avro schema is malformed, missing, or not compatible with another."""


class RegistryError(ArroyoError):
    """The schema registry could not be reached or refused a request (retryable)."""


class PublishError(ArroyoError):
    """A destination did not confirm a message (retryable unless also a PermanentError)."""


class MessageTooLargeError(PublishError, PermanentError):
    """A message exceeds a size limit of the client or the broker; the text says which."""
