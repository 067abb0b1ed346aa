"""RabbitMQ: ``amqp://USER:PASS@HOST:PORT/VHOST?queue=Q`` (``amqps://`` for TLS), with aio-pika.

An empty VHOST is ``/`` (``%2F`` also works); the port defaults to 5672 (5671 with
``amqps://``). The queue is declared when missing (``declare=false`` to only use an
existing one): durable, of ``queue_type`` ``classic`` (default) or ``quorum``.
Connections are robust: after a lost connection or a broker restart they are opened
again (every ``reconnect_interval`` seconds), with their channels, prefetch and
consumers.

**Listener** (:mod:`.listener`). Consumes the queue with manual acknowledgements;
workers sharing a queue are competing consumers. ``prefetch`` is how many
unacknowledged messages the broker sends ahead: the backpressure. What arrived while
the listener was handing over is handed over together. A message is acknowledged once
the Block is done with it (a batch of them that leaves no earlier delivery of its
channel out, in one ``basic.ack`` with ``multiple``); a message received on a channel that has
since been re-opened cannot be acknowledged any more (the broker redelivers it, so it is
processed again). What a worker had not acknowledged when it died goes back to the
queue. ``Received.deliveries`` is exact on quorum queues (their ``x-delivery-count``
header). Classic queues only say whether a message was delivered before, so there it is
1 or 2, and a message that keeps crashing workers is dead-lettered only when
``max_deliveries`` is 1: use ``queue_type=quorum`` where that matters. The header is read
only when the listener's ``queue_type`` is ``quorum`` (checked by the declaration; with
``declare=false`` it must match the queue): on a classic queue an ``x-delivery-count``
comes with the message (moved from a quorum queue), and counts nothing here. The
delivery journal (``delivery_journal``, on by default: :mod:`arroyo.runtime.journal`)
replaces the broker's count, on both kinds of queue, with the number of workers (of this
machine) that died while processing the message, for messages that have a
``message_id`` (Arroyo's publisher sets it): the other messages a dying worker held are
not counted with it.

**Publisher** (:mod:`.publisher`). Persistent messages (delivery mode 2), each confirmed
by the broker (publisher confirms); sends are pipelined on one channel and keep their
order. By default to the queue (the default exchange, routing key = queue name); with
``exchange=X`` (which must exist) and ``routing_key=K`` to an exchange. Each message
carries ``message_id`` (the Arroyo id), ``type`` (start/event/stop) and the headers
``arroyo.stream`` and ``arroyo.seq`` (with tracing on, :mod:`arroyo.runtime.tracing`,
also ``traceparent`` and ``tracestate``, which the listener continues). A message no
queue takes is not dropped: it is returned, and the publish fails (and is retried by the
Block), as does one not confirmed within ``confirm_timeout`` seconds.

**Dead letters** (as the Block's ``dead_letter``): the original bytes with RabbitMQ's
dead-letter headers (``x-death``, ``x-first-death-reason`` = ``rejected``,
``x-first-death-queue``, ``x-first-death-exchange``) and Arroyo's
(``arroyo.dead-letter.reason``, ``arroyo.source.queue``...).

**Options** (URL query or YAML), declared with their defaults and limits in
:mod:`.settings`, the one place they are written:

- every endpoint: ``queue``; ``username`` and ``password`` (instead of the URL's);
  ``connect_timeout`` (10 s: how long starting keeps trying to reach the broker before it
  fails with one line, see :mod:`arroyo.brokers.connecting`); ``timeout`` (10 s, for
  acknowledgements); ``reconnect_interval`` (2 s); ``heartbeat`` (60 s); with
  ``amqps://``, ``ssl_ca`` (CA file), ``ssl_cert`` / ``ssl_key`` (client certificate),
  ``ssl_verify`` (true);
- listener and publisher: ``queue_type`` (classic), ``declare`` (true);
- listener: ``prefetch`` (256), ``delivery_journal`` (the default folder; a folder, or
  false);
- publisher: ``exchange``, ``routing_key`` (the queue's name), ``confirm_timeout`` (60 s);
- ``arroyo tail`` (:mod:`.browse`): ``queue_type`` (found out; also ``stream``),
  ``batch`` (100), ``idle_ms`` (1000).

Passwords never appear in logs or errors. Connecting is :mod:`.connection`.
"""

from __future__ import annotations

from arroyo._optional import require
from arroyo.brokers.connector import Connector

require("aio_pika", "rabbitmq", "The RabbitMQ connector (amqp:// URLs)")

from arroyo.brokers.rabbitmq import browse, connection, listener, publisher  # noqa: E402
from arroyo.brokers.rabbitmq.browse import RabbitMQBrowser  # noqa: E402
from arroyo.brokers.rabbitmq.connection import RabbitMQBroker  # noqa: E402
from arroyo.brokers.rabbitmq.listener import RabbitMQListener, deliveries  # noqa: E402
from arroyo.brokers.rabbitmq.publisher import RabbitMQPublisher  # noqa: E402
from arroyo.brokers.rabbitmq.settings import (  # noqa: E402
    RabbitMQBrowseSettings,
    RabbitMQListenerSettings,
    RabbitMQPublisherSettings,
    RabbitMQSettings,
)

__all__ = [
    "CONNECTOR",
    "RabbitMQBroker",
    "RabbitMQBrowseSettings",
    "RabbitMQBrowser",
    "RabbitMQListener",
    "RabbitMQListenerSettings",
    "RabbitMQPublisher",
    "RabbitMQPublisherSettings",
    "RabbitMQSettings",
    "deliveries",
]

CONNECTOR = Connector(
    name="rabbitmq",
    schemes=("amqp", "amqps"),
    extra="rabbitmq",
    listener=listener.listener,
    publisher=publisher.publisher,
    browser=browse.browser,
    probe=connection.probe,
)
