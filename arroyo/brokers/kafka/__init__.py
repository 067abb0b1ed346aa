"""``kafka://HOST:PORT/TOPIC?group=G``: Apache Kafka through confluent-kafka (librdkafka).

Every option, with its default, is declared in ``arroyo/brokers/kafka/settings.py``
(the URL query and the YAML block next to the URL fill it; an unknown option is an
error naming it). Keys with a dot are librdkafka's own settings (TLS, SASL, timeouts,
batching: ``security.protocol``, ``sasl.password``, ``linger.ms``...): they pass through
to the client and librdkafka checks them before anything starts. ``ssl_ca``,
``ssl_cert``, ``ssl_key`` (the names every Arroyo connector takes) stand for
``ssl.ca.location``, ``ssl.certificate.location``, ``ssl.key.location`` and imply
``security.protocol=SSL``. Several brokers to bootstrap from go in the URL
(``kafka://h1:9092,h2:9092,h3:9092/TOPIC``; the port defaults to 9092) or in
``bootstrap.servers``, which replaces the URL's address. Starting waits up to
``connect_timeout`` (10 s) for the cluster, then fails with one line saying why (a TLS
failure at once); later outages are waited out. Secret values never appear in logs or
errors; librdkafka's own log lines go to the logger
``arroyo.brokers.kafka.client`` at debug level, its errors to ``arroyo.brokers.kafka``.

Listener (consumer group)
    ``kafka://HOST:PORT/TOPIC?group=G`` reads ``TOPIC`` in the consumer group ``G``
    (required). Several topics: ``kafka://h:p/a,b``; a regular expression (librdkafka's):
    ``kafka://h:p/^frames-.*``. A new group starts at the **earliest** offset and reads
    only committed transactional data (``read_committed``). Auto-commit is off: offsets
    are committed in batches, only below the lowest message of each partition that is
    not acknowledged yet, and a revocation lets the revoked partitions' in-flight work
    finish and commits it first (``partitions.py``). A Block full for longer than
    ``pause_after_ms`` pauses the partitions; the consumer keeps polling, so it stays in
    the group. Kafka keeps no delivery count: the delivery journal
    (``delivery_journal``, on by default; ``arroyo/runtime/journal.py``) counts the
    workers that died while processing a message, so a message that keeps killing
    workers reaches the Block's ``max_deliveries`` and goes to the dead letter.

Publisher
    ``kafka://HOST:PORT/TOPIC`` produces with the idempotent producer and the Java
    client's partitioner (``murmur2_random``). The key is the message's ``stream``, so a
    run stays in order in one partition (also after a failed delivery:
    ``producer.py``). Headers ``arroyo.kind``, ``arroyo.schema`` (the writer schema's
    fingerprint in hex, or the registry's schema id) and ``arroyo.id`` let tools route
    without decoding Avro. Messages up to ``message.max.bytes`` (64 MiB unless set); a
    larger one fails with MessageTooLargeError naming the settings to raise. A topic
    whose ``max.message.bytes`` is smaller gets a warning; one that does not exist yet is
    created to fit (``admin.py``, which also creates the topics ``create:`` asks for).
    ``format: ess`` or ``format: bluesky-kafka`` (``?format=`` in the URL;
    ``format_options`` in YAML) writes a facility's wire format instead
    (:mod:`arroyo.formats`): each message as the records the format makes, in order,
    confirmed once all of them are; no ``arroyo.*`` headers (``publisher.py``).
    With tracing on (:mod:`arroyo.runtime.tracing`), the W3C ``traceparent`` and
    ``tracestate`` headers go with each record (formats included), and the listener
    continues the trace of a record that has them.

Dead letters
    ``publish_dead_letter`` produces the ORIGINAL bytes as the value, with the reason,
    error, attempts, block and source topic/partition/offset in ``arroyo.dead-letter.*``
    and ``arroyo.source.*`` headers. A multipart message: the first part is the value,
    ``arroyo.dead-letter.parts`` says how many parts there were, and the other parts
    are the headers ``arroyo.dead-letter.part.1``, ``.2``, ... (raw bytes). A
    publisher's ``format`` does not apply: dead letters keep this framing.

Exactly-once (``guarantee: exactly-once`` in a Kafka -> Kafka block)
    Kafka transactions: see :func:`~arroyo.brokers.kafka.exactly_once.exactly_once`.

``arroyo tail`` reads partitions by assignment, joins no group and commits nothing
(``browse.py``).
"""

from __future__ import annotations

from arroyo._optional import require
from arroyo.brokers.connector import Connector

ck = require("confluent_kafka", "kafka", "The Kafka connector (kafka:// URLs)")

from arroyo.brokers.kafka.admin import probe  # noqa: E402
from arroyo.brokers.kafka.browse import KafkaBrowser, browser  # noqa: E402
from arroyo.brokers.kafka.exactly_once import exactly_once  # noqa: E402
from arroyo.brokers.kafka.listener import KafkaListener, listener  # noqa: E402
from arroyo.brokers.kafka.publisher import KafkaPublisher, publisher  # noqa: E402
from arroyo.brokers.kafka.transactions import TransactionError  # noqa: E402

__all__ = [
    "CONNECTOR",
    "KafkaBrowser",
    "KafkaListener",
    "KafkaPublisher",
    "TransactionError",
    "exactly_once",
    "listener",
    "publisher",
]

CONNECTOR = Connector(
    name="kafka",
    schemes=("kafka",),
    extra="kafka",
    listener=listener,
    publisher=publisher,
    browser=browser,
    probe=probe,
    exactly_once=exactly_once,
    several_servers=True,
)
