"""The exactly-once hook of the Kafka connector: joins a Kafka listener and its Kafka
publishers (and a Kafka dead-letter destination) in one :class:`Transactions`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from arroyo.brokers.kafka.listener import KafkaListener
from arroyo.brokers.kafka.publisher import KafkaPublisher
from arroyo.brokers.kafka.transactions import Transactions
from arroyo.errors import ConfigError

if TYPE_CHECKING:
    from arroyo.runtime.listener import Listener
    from arroyo.runtime.publisher import Publisher

log = logging.getLogger("arroyo.brokers.kafka")


def exactly_once(
    listener: Listener, publishers: list[Publisher], dead_letter: Publisher | None
) -> None:
    """Make a Kafka -> Kafka block exactly-once with Kafka transactions.

    The publishers share one transactional producer (``transactional.id`` unique per
    worker process, as KIP-447 allows: zombies are fenced by the consumer group's
    generation). Outputs are produced inside a transaction; every ``commit_interval_ms``
    (or ``commit_every`` acknowledgements, or as soon as a poll finds the input idle, so
    that the last outputs do not wait for the interval to become visible to
    ``read_committed`` readers), new outputs are held back, the delivery of
    those already produced is awaited (all outputs of one input are sent together, so
    an input is never split across transactions), then the Block's acknowledgement of
    the inputs they complete, the listener's offsets go into the transaction
    (``send_offsets_to_transaction``) and it is committed; then the held outputs open
    the next one. The listener commits no offsets of its own. Readers must use
    ``isolation.level=read_committed`` (Arroyo's Kafka listener does by default).

    On a revocation the open transaction is committed first (after the revoked
    partitions' in-flight work finished). On any transaction error (an abortable error,
    a failed delivery, partitions lost, or revoked work that did not finish within
    ``drain_timeout_ms``) the transaction is aborted and the worker stops with
    :class:`~arroyo.brokers.kafka.transactions.TransactionError`: restarting from the
    committed offsets is the one way that loses nothing and duplicates nothing, and the
    group hands the partitions to the other workers meanwhile.

    The dead-letter destination joins the transaction when it is a Kafka publisher on
    the same cluster with the same settings; otherwise dead letters stay at-least-once.

    Raises ConfigError when the listener or a publisher is not Kafka, or a publisher is
    on another cluster or has other settings than the first.
    """
    if not isinstance(listener, KafkaListener):
        raise ConfigError(f"exactly-once needs a Kafka listener; {listener.name} is not Kafka")
    if not publishers:
        raise ConfigError("exactly-once needs at least one Kafka publisher")
    others = [p.name for p in publishers if not isinstance(p, KafkaPublisher)]
    if others:
        raise ConfigError(
            "exactly-once works through Kafka transactions, so every publisher must be "
            f"Kafka; not Kafka: {', '.join(others)}"
        )
    kafka = [p for p in publishers if isinstance(p, KafkaPublisher)]
    first = kafka[0]
    for p in kafka:
        if p.servers != listener.servers:
            raise ConfigError(
                f"exactly-once: {p.name} is on another cluster ({p.servers}) than the "
                f"listener ({listener.servers}); a transaction spans one cluster"
            )
        if p.config != first.config:
            keys = sorted(
                k
                for k in set(p.config) | set(first.config)
                if p.config.get(k) != first.config.get(k)
            )
            raise ConfigError(
                f"exactly-once: the publishers share one transactional producer, so their "
                f"settings must be the same; {p.name} differs from {first.name} in: "
                f"{', '.join(keys)}"
            )
    txn = Transactions(first.name, first.config, first.hide, listener.group)
    listener.partitions.txn = txn
    if listener.partitions.drain_timeout >= txn.timeout:
        log.warning(
            "%s: drain_timeout_ms (%g s) is not below the publishers' transaction.timeout.ms "
            "(%g s): a rebalance that waits that long for the work under way finds the "
            "broker has aborted its transaction, and the worker stops; lower drain_timeout_ms",
            listener.name,
            listener.partitions.drain_timeout,
            txn.timeout,
        )
    for p in kafka:
        p.transactions = txn
    if (
        isinstance(dead_letter, KafkaPublisher)
        and dead_letter.servers == listener.servers
        and dead_letter.config == first.config
    ):
        dead_letter.transactions = txn
