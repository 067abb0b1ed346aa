"""A stand-in for librdkafka's Producer and Consumer (``fake_kafka``), for unit tests of
the connector's own logic: transactions, the order of a failed delivery, what a listener
commits. Never evidence that the connector works with Kafka (tests/integration does that).

The cluster has topics of one partition. A producer's messages wait in its queue until
the test delivers them (:meth:`FakeCluster.deliver`, or on their own while ``delivering()``
is true); a transaction keeps what it produced and the offsets sent with it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

ck = pytest.importorskip("confluent_kafka")


class FakeMessage:
    """What librdkafka hands back: a consumed record or a delivery report's message."""

    def __init__(self, topic: str, value: bytes, key: bytes | None, offset: int = -1) -> None:
        self._topic, self._value, self._key, self._offset = topic, value, key, offset

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def error(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self._value)


@dataclass
class Transaction:
    """A committed transaction: the values it produced and the offsets sent with it."""

    produced: list[bytes] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)


class FakeCluster:
    """Topics (one partition each), what producers wrote, committed transactions."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.topics: dict[str, list[bytes]] = {}
        self.transactions: list[Transaction] = []
        self.producers: list[FakeProducer] = []
        self.delivering: Callable[[], bool] = lambda: True
        """Whether queued messages are delivered on their own (at the next poll)."""

    def fill(self, topic: str, values: list[bytes]) -> None:
        self.topics.setdefault(topic, []).extend(values)

    def deliver(self, error: int | None = None, count: int | None = None) -> None:
        """Deliver (``error``: fail) the first ``count`` queued messages (None: all)."""
        with self.lock:
            for producer in self.producers:
                producer.deliver(error, count)


class FakeProducer:
    """The calls Arroyo's producer makes of librdkafka's Producer."""

    def __init__(self, cluster: FakeCluster, config: dict[str, Any]) -> None:
        self.cluster = cluster
        self.config = config
        self.queue: list[tuple[FakeMessage, Callable[..., None]]] = []
        self.reports: list[tuple[Callable[..., None], Any, FakeMessage]] = []
        self.txn: Transaction | None = None
        self.capacity = 100_000
        """Messages its queue takes (then produce raises BufferError)."""
        self.max_size: int | None = None
        """The largest value produce takes (a larger one: MSG_SIZE_TOO_LARGE at once)."""
        cluster.producers.append(self)

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        return type("Metadata", (), {"topics": dict.fromkeys(self.cluster.topics)})()

    def produce(self, topic: str, value: bytes, key: bytes | None = None, **kwargs: Any) -> None:
        with self.cluster.lock:
            if self.max_size is not None and len(value) > self.max_size:
                raise ck.KafkaException(ck.KafkaError(ck.KafkaError.MSG_SIZE_TOO_LARGE))
            if len(self.queue) >= self.capacity:
                raise BufferError("queue full")
            self.queue.append((FakeMessage(topic, value, key), kwargs["on_delivery"]))
            if self.txn is not None:
                self.txn.produced.append(value)

    def deliver(self, error: int | None, count: int | None) -> None:
        with self.cluster.lock:
            taken = self.queue[: len(self.queue) if count is None else count]
            del self.queue[: len(taken)]
            for msg, report in taken:
                if error is None:
                    self.cluster.fill(msg.topic(), [msg.value()])
                    self.reports.append((report, None, msg))
                else:
                    self.reports.append((report, ck.KafkaError(error), msg))

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None:
        with self.cluster.lock:
            for msg, report in self.queue:
                self.reports.append((report, ck.KafkaError(ck.KafkaError._PURGE_QUEUE), msg))
            self.queue.clear()

    def poll(self, timeout: float = 0) -> int:
        with self.cluster.lock:
            if self.cluster.delivering():
                self.deliver(None, None)
            reports, self.reports = self.reports, []
        for report, error, msg in reports:
            report(error, msg)
        if not reports:
            time.sleep(min(timeout, 0.01))
        return len(reports)

    def flush(self, timeout: float = -1) -> int:
        self.cluster.deliver()
        self.poll(0)
        return 0

    def close(self) -> None:
        pass

    def init_transactions(self, timeout: float = -1) -> None:
        pass

    def begin_transaction(self) -> None:
        self.txn = Transaction()

    def send_offsets_to_transaction(
        self, offsets: list[Any], metadata: Any, timeout: float
    ) -> None:
        assert self.txn is not None
        self.txn.offsets.update({(tp.topic, tp.partition): tp.offset for tp in offsets})

    def commit_transaction(self, timeout: float = -1) -> None:
        assert self.txn is not None and not self.queue, "committed with undelivered messages"
        self.cluster.transactions.append(self.txn)
        self.txn = None

    def abort_transaction(self, timeout: float = -1) -> None:
        self.txn = None


class FakeConsumer:
    """The calls Arroyo's listener makes of librdkafka's Consumer: one partition of each
    subscribed topic, assigned at the first poll; it reads what the cluster holds."""

    def __init__(self, cluster: FakeCluster, config: dict[str, Any]) -> None:
        self.cluster = cluster
        self.config = config
        self.topics: list[str] = []
        self.positions: dict[str, int] = {}
        self.callbacks: dict[str, Any] = {}
        self.committed: list[list[Any]] = []

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        return type("Metadata", (), {"topics": dict.fromkeys(self.cluster.topics)})()

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.topics, self.callbacks = topics, callbacks

    def consume(self, count: int, timeout: float = -1) -> list[FakeMessage]:
        if not self.positions:
            self.positions = dict.fromkeys(self.topics, 0)
            partitions = [ck.TopicPartition(topic, 0) for topic in self.topics]
            self.callbacks["on_assign"](self, partitions)
        taken: list[FakeMessage] = []
        with self.cluster.lock:
            for topic, position in self.positions.items():
                values = self.cluster.topics.get(topic, [])[position : position + count]
                taken += [FakeMessage(topic, v, None, position + i) for i, v in enumerate(values)]
                self.positions[topic] = position + len(values)
        if not taken:
            time.sleep(min(timeout, 0.01))
        return taken

    def poll(self, timeout: float = -1) -> FakeMessage | None:
        taken = self.consume(1, timeout)
        return taken[0] if taken else None

    def commit(self, offsets: list[Any], asynchronous: bool = True) -> list[Any]:
        self.committed.append(offsets)
        return offsets

    def assignment(self) -> list[Any]:
        return [ck.TopicPartition(topic, 0) for topic in self.positions]

    def pause(self, partitions: list[Any]) -> None:
        pass

    def resume(self, partitions: list[Any]) -> None:
        pass

    def consumer_group_metadata(self) -> str:
        return "group metadata"

    def close(self) -> None:
        pass


@pytest.fixture
def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    """librdkafka's Producer and Consumer replaced by fakes of one :class:`FakeCluster`
    (make listeners and publishers first: their settings are checked by librdkafka)."""
    from arroyo.brokers.kafka import admin

    cluster = FakeCluster()
    monkeypatch.setattr(admin, "fit_topic", lambda *args: None)  # no admin client
    monkeypatch.setattr(ck, "Producer", lambda config: FakeProducer(cluster, config))
    monkeypatch.setattr(ck, "Consumer", lambda config: FakeConsumer(cluster, config))
    return cluster
