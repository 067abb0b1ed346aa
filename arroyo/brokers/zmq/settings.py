"""The ZeroMQ connectors' options: names, types, defaults and constraints, written once.

A listener (``zmq+pull://``, ``zmq+sub://``) takes :class:`ZmqListenerSettings`, a
publisher (``zmq+push://``, ``zmq+pub://``) :class:`ZmqPublisherSettings`, ``arroyo
tail`` (``zmq+sub://``) :class:`ZmqBrowserSettings`; the simulated detector
(:mod:`arroyo.simulate`) :class:`ZmqSimulatorSettings`. ZeroMQ has no connection to
wait for (a connecting socket needs no peer at start), so no ``connect_timeout``, and no
TLS.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from arroyo.brokers.settings import Settings


class ZmqSettings(Settings):
    """What every ZeroMQ socket takes: ``bind`` binds on the URL's host instead of
    connecting to it (``*`` as host always binds; a bound port 0 takes a free port)."""

    broker = "zmq"
    bind: bool = False


class ZmqReceivingSettings(ZmqSettings):
    """What a receiving socket (PULL, SUB) takes.

    ``topic``: SUB only, prefix filters on the first frame (one string, or a list in
    YAML; the default ``""`` takes everything). ``rcvhwm``: the socket queue, in messages.
    """

    topic: tuple[str, ...] = ("",)
    rcvhwm: int = Field(default=16, ge=0)

    @field_validator("topic", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        """A single topic (a URL query value) is a list of one."""
        return (value,) if isinstance(value, str) else value


class ZmqListenerSettings(ZmqReceivingSettings):
    """A listener's options (``zmq+pull://``, ``zmq+sub://``).

    ``rcvhwm`` (16): small, because the Block's intake is the real buffer (bounded in
    bytes); raise it for PUB/SUB bursts. ``copy_threshold``: frames of at least this many
    bytes are handed over without a copy (read-only views of ZeroMQ's buffers).
    ``run_timeout``: seconds without a message of an open run after which the run is
    counted as ended without its Stop.
    """

    copy_threshold: int = Field(default=65536, ge=0)
    run_timeout: float = Field(default=60.0, gt=0)


class ZmqBrowserSettings(ZmqReceivingSettings):
    """``arroyo tail``'s options (``zmq+sub://`` only): a deeper queue than a listener's
    (``rcvhwm`` 1000), since tail has no intake of its own."""

    rcvhwm: int = Field(default=1000, ge=0)


class ZmqPublisherSettings(ZmqSettings):
    """A publisher's options (``zmq+push://``, ``zmq+pub://``).

    ``sndhwm`` (16): messages queued in the socket; then PUSH blocks (so the Block
    waits) and PUB drops. ``linger``: milliseconds ``close()`` waits for queued messages
    to go out (-1: forever).
    """

    sndhwm: int = Field(default=16, ge=0)
    linger: int = Field(default=5000, ge=-1)


class ZmqSimulatorSettings(ZmqPublisherSettings):
    """The simulated detector's socket options: a publisher's, waiting longer at the end
    (``linger`` 30000 ms) for the last frames to go out."""

    linger: int = Field(default=30000, ge=-1)
