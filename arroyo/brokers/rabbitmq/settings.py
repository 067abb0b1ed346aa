"""Every option of the RabbitMQ connector: its name, type, default and constraints.

This is the one place they are written. The URL's query and the YAML options next to the
URL fill these models (see :mod:`arroyo.brokers.settings`); an unknown option, or a value
out of range, is a ConfigError naming the option and ``rabbitmq``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from arroyo.brokers.settings import ConnectSettings, TlsSettings


class RabbitMQSettings(ConnectSettings, TlsSettings):
    """How to connect, for the listener, the publisher and ``arroyo tail``.

    ``username`` / ``password`` win over the URL's (default ``guest``); the password never
    appears in logs or errors. TLS (``ssl_*``) needs ``amqps://``.
    """

    broker = "rabbitmq"

    queue: str = ""
    """The queue (``?queue=Q``)."""
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    timeout: float = Field(default=10.0, gt=0)
    """Seconds to wait for an acknowledgement to be sent (listener) or for the broker's
    answer (``arroyo tail``)."""
    reconnect_interval: float = Field(default=2.0, gt=0)
    """Seconds between attempts to open a lost connection again."""
    heartbeat: int = 60
    """Seconds of the AMQP heartbeat."""

    @field_validator("username", "password", mode="before")
    @classmethod
    def _digits_are_text(cls, value: Any) -> Any:
        """A password of digits is a number in YAML: it is the same text."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class RabbitMQQueueSettings(RabbitMQSettings):
    """The queue a listener consumes or a publisher sends to, as it is declared."""

    queue_type: Literal["classic", "quorum"] = "classic"
    """The type the queue is declared with (``x-queue-type``) or, with ``declare=false``,
    the type it has. Only a quorum queue counts deliveries: the listener reads a
    message's ``x-delivery-count`` only when this is ``quorum``; on a classic queue that
    header came along with the message and counts nothing here."""
    declare: bool = True
    """Declare the queue (durable) when it is missing; false: it must exist."""

    @property
    def counts_deliveries(self) -> bool:
        """True when the queue counts deliveries in ``x-delivery-count`` (quorum)."""
        return self.queue_type == "quorum"


class RabbitMQListenerSettings(RabbitMQQueueSettings):
    """The options of a listener (``queue`` is required)."""

    prefetch: int = Field(default=256, ge=1)
    """Unacknowledged messages the broker sends ahead: the backpressure."""
    delivery_journal: bool | str = ""
    """Where the delivery journal is kept (:mod:`arroyo.runtime.journal`): ``""`` or true
    for the default folder, a folder, or false for none."""


class RabbitMQPublisherSettings(RabbitMQQueueSettings):
    """The options of a publisher (a ``queue``, or an ``exchange``)."""

    exchange: str = ""
    """An exchange to publish to instead of the queue (it must exist)."""
    routing_key: str | None = None
    """The routing key (default: the queue's name)."""
    confirm_timeout: float = Field(default=60.0, gt=0)
    """Seconds to wait for the broker to confirm a message."""


class RabbitMQBrowseSettings(RabbitMQSettings):
    """The options of ``arroyo tail`` (see :mod:`arroyo.brokers.rabbitmq.browse`)."""

    queue_type: Literal["", "classic", "quorum", "stream"] = ""
    """The queue's type; "" finds it out."""
    declare: bool = True
    """Accepted (a listener's URL can be pasted) and changes nothing: tail never
    declares."""
    batch: int = Field(default=100, ge=1)
    """Messages of a stream queue in flight."""
    idle_ms: int = Field(default=1000, ge=1)
    """A stream queue's end: no message came for this long (milliseconds)."""
