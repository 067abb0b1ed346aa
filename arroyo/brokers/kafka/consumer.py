"""The consumer thread of a Kafka listener: the confluent-kafka Consumer and every call
made on it.

librdkafka's consumer is synchronous, and its rebalance callbacks run inside the call
that serves them (``poll`` or ``consume``). So every method here runs in the listener's
one consumer thread: :meth:`Consumer.fetch` takes a batch, :meth:`Consumer.hold` keeps
the group membership while the Block is full, and the rebalance callbacks hand the
partitions to the listener (which runs its side on the event loop and waits for it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import confluent_kafka as ck

from arroyo.brokers.kafka.connection import (
    Hide,
    Key,
    Reachability,
    callbacks,
    error_text,
    reach,
    unreachable,
)
from arroyo.errors import ConfigError, ConnectError
from arroyo.runtime.logs import Throttle

log = logging.getLogger("arroyo.brokers.kafka")


class Consumer:
    """A confluent-kafka Consumer, subscribed to ``topics``, read a batch at a time.

    Every method runs in the listener's consumer thread. ``assigned(consumer, keys)`` and
    ``revoked(consumer, keys, lost)`` are called from librdkafka's rebalance callbacks,
    in that thread too, and must not raise.
    """

    def __init__(
        self,
        name: str,
        topics: list[str],
        config: dict[str, str],
        hide: Hide,
        *,
        batch_size: int,
        poll_timeout: float,
        connect_timeout: float,
        on_commit: Callable[[Any, list[Any]], None],
        assigned: Callable[[Any, list[Key]], None],
        revoked: Callable[[Any, list[Key], bool], None],
    ) -> None:
        self.name = name
        self.topics = topics
        self.config = config
        self.hide = hide
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self.connect_timeout = connect_timeout
        self._on_commit = on_commit
        self._assigned = assigned
        self._revoked = revoked
        self.client: Any = None
        """The confluent-kafka Consumer, once :meth:`open` made it."""
        self.paused = False
        """True while :meth:`hold` has the assignment paused."""
        self.fatal: Any = None
        """librdkafka's fatal error, once there is one."""
        self.reachability = Reachability()
        """Whether the consumer reaches a broker now (librdkafka's statistics)."""
        self._repeats = Throttle(30.0)
        self._revoked_during: set[Key] = set()

    def open(self) -> None:
        """Make the consumer, wait (up to ``connect_timeout``) until the cluster answers,
        subscribe. Raises ConfigError for settings librdkafka refuses, ConnectError
        saying why the cluster did not answer."""
        config: dict[str, Any] = {
            **self.config,
            **callbacks(self.name, self.hide, self._on_fatal, self._repeats, self.reachability),
            "on_commit": self._on_commit,
        }
        try:
            consumer = ck.Consumer(config)
        except (ck.KafkaException, ValueError, TypeError) as exc:
            raise ConfigError(f"{self.name}: {self.hide(error_text(exc))}") from None
        said = config["logger"]
        try:
            reach(consumer, self.connect_timeout, lambda: self.fatal is not None, said, config)
        except ck.KafkaException:
            # What librdkafka said until now, before close() serves more of its reports
            # (newer failures would push the reason out of those unreachable() reads).
            reports = list(said.reports)
            consumer.close()
            line = unreachable(self.name, self.config, reports, self.connect_timeout)
            raise ConnectError(self.hide(line)) from None
        consumer.subscribe(
            list(self.topics),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self.client = consumer

    def _on_fatal(self, error: Any) -> None:
        self.fatal = error

    def fetch(self, commit: list[Any] | None) -> list[Any]:
        """Commit (asynchronously) what is due, then take what is there, or wait up to
        poll_timeout for the first message and take what came with it."""
        consumer = self.client
        if commit:
            consumer.commit(offsets=commit, asynchronous=True)
        if self.paused:
            consumer.resume(consumer.assignment())
            self.paused = False
        msgs = consumer.consume(self.batch_size, 0)
        if not msgs:
            first = consumer.poll(self.poll_timeout)
            if first is None:
                return []
            msgs = [first]
            if self.batch_size > 1:
                # Only a revocation served by the next call makes ``first`` stale. One
                # served by the calls above came before it: ``first`` is then the first
                # message of the new assignment, and dropping it would skip it for good
                # (the offsets after it get committed).
                self._revoked_during.clear()
                more = consumer.consume(self.batch_size - 1, 0)
                if self._revoked_during:  # a rebalance between poll and consume
                    revoked = self._revoked_during
                    msgs = [m for m in msgs if (m.topic(), m.partition()) not in revoked]
                msgs += more
        return self._good(msgs)

    def hold(self, commit: list[Any] | None) -> list[Any]:
        """Pause the assigned partitions and poll (serves rebalances, keeps membership)."""
        consumer = self.client
        if commit:
            consumer.commit(offsets=commit, asynchronous=True)
        assignment = consumer.assignment()
        if assignment:
            consumer.pause(assignment)
        self.paused = True
        return self._good(consumer.consume(self.batch_size, 0))

    def _good(self, msgs: list[Any]) -> list[Any]:
        bad = [m for m in msgs if m.error() is not None]
        if not bad:
            return msgs
        for msg in bad:
            error = msg.error()
            if error.code() == ck.KafkaError._PARTITION_EOF:
                continue
            if error.fatal():
                raise ck.KafkaException(error)
            # e.g. a topic that does not exist yet
            text = self.hide(error.str())
            self._repeats(log, logging.WARNING, text, "%s: %s", self.name, text)
        return [m for m in msgs if m.error() is None]

    def group_metadata(self) -> Any:
        return self.client.consumer_group_metadata()

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        # librdkafka keeps a partition paused across a rebalance: one that hold() paused
        # and that was revoked before fetch() resumed the assignment would never be read
        # again once assigned back. A new assignment starts unpaused (hold() pauses it
        # again while the Block is full).
        consumer.resume(partitions)
        self._assigned(consumer, [(p.topic, p.partition) for p in partitions])

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self._revoke(consumer, partitions, lost=False)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        self._revoke(consumer, partitions, lost=True)

    def _revoke(self, consumer: Any, partitions: list[Any], lost: bool) -> None:
        keys = [(p.topic, p.partition) for p in partitions]
        self._revoked_during.update(keys)
        self._revoked(consumer, keys, lost)

    def close(self) -> None:
        """Leave the group (the listener committed first)."""
        consumer, self.client = self.client, None
        if consumer is not None:
            consumer.close()
