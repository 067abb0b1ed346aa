"""Exactly-once (transactions.py), without a broker: what may take part, and what each
transaction commits (a fake librdkafka: tests/unit/brokers/kafka/conftest.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from arroyo import decode, encode
from arroyo.brokers.kafka import KafkaListener, exactly_once
from arroyo.brokers.kafka.transactions import Transactions
from arroyo.brokers.memory import MemoryPublisher
from arroyo.errors import ConfigError, DecodeError, MessageTooLargeError
from arroyo.runtime import Block
from arroyo.runtime.listener import Received
from arroyo.testing import make_run
from tests.unit.brokers.kafka.endpoints import make_listener, make_publisher

ck = pytest.importorskip("confluent_kafka")


def test_exactly_once_needs_kafka_publishers_on_the_listener_cluster() -> None:
    lst = make_listener("kafka://h:9092/in?group=g")
    with pytest.raises(ConfigError, match="every publisher must be Kafka"):
        exactly_once(lst, [make_publisher("kafka://h:9092/out"), MemoryPublisher("x")], None)
    with pytest.raises(ConfigError, match="another cluster"):
        exactly_once(lst, [make_publisher("kafka://other:9092/out")], None)
    with pytest.raises(ConfigError, match=r"differs .* in: linger\.ms"):
        exactly_once(
            lst,
            [make_publisher("kafka://h:9092/a"), make_publisher("kafka://h:9092/b?linger.ms=9")],
            None,
        )
    with pytest.raises(ConfigError, match="at least one Kafka publisher"):
        exactly_once(lst, [], None)


def test_exactly_once_shares_one_transactional_producer() -> None:
    lst = make_listener("kafka://h:9092/in?group=g")
    out, same, other = (
        make_publisher("kafka://h:9092/out"),
        make_publisher("kafka://h:9092/dlq"),
        make_publisher("kafka://h:9092/dlq2", **{"message.max.bytes": 20000000}),
    )
    exactly_once(lst, [out], same)
    txn = lst.partitions.txn
    assert txn is not None and out.transactions is txn and same.transactions is txn
    assert txn.txn_id.startswith("arroyo-g-")
    lst2, out2 = make_listener("kafka://h:9092/in?group=g"), make_publisher("kafka://h:9092/o")
    exactly_once(lst2, [out2], other)
    assert other.transactions is None  # other settings: dead letters stay at-least-once


def test_a_drain_as_long_as_a_transaction_may_last_is_warned_of(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A rebalance's drain that outlasts transaction.timeout.ms finds the transaction
    aborted by the broker (and the worker stops): said once, at set-up."""
    out = make_publisher("kafka://h:9092/out?transaction.timeout.ms=6000")
    exactly_once(make_listener("kafka://h:9092/in?group=g&drain_timeout_ms=5999"), [out], None)
    assert not caplog.records
    out = make_publisher("kafka://h:9092/out?transaction.timeout.ms=6000")
    exactly_once(make_listener("kafka://h:9092/in?group=g"), [out], None)
    (record,) = caplog.records
    assert record.getMessage() == (
        "kafka://h:9092/in?group=g: drain_timeout_ms (10 s) is not below the publishers' "
        "transaction.timeout.ms (6 s): a rebalance that waits that long for the work under "
        "way finds the broker has aborted its transaction, and the worker stops; lower "
        "drain_timeout_ms"
    )


def test_exactly_once_is_refused_for_other_listeners_by_config(tmp_path: Path) -> None:
    from arroyo.build import build_file

    config = tmp_path / "p.yaml"
    config.write_text(
        "blocks:\n"
        "  - name: b\n"
        "    listener: kafka://h:9092/in?group=g\n"
        "    publishers: [memory://out]\n"
        "    guarantee: exactly-once\n"
    )
    with pytest.raises(ConfigError, match=r"guarantee.*every publisher must be Kafka"):
        build_file(config)


def slow_acknowledgements(listener: KafkaListener, turns: int) -> None:
    """The listener's acknowledgements take ``turns`` turns of the event loop each (as
    a listener whose ack does real work, or a wrapper, makes them)."""
    original = listener.ack_many

    async def ack_many(batch: Sequence[Received]) -> list[BaseException | None]:
        for _ in range(turns):
            await asyncio.sleep(0)
        return await original(batch)

    listener.ack_many = ack_many  # type: ignore[method-assign]


def identity(value: bytes) -> Any:
    """An output or input by what it is: the message's id, or the bytes of a bad one."""
    try:
        return decode(value).id
    except DecodeError:
        return value


async def test_each_transaction_commits_the_offsets_of_exactly_its_outputs(
    fake_kafka: Any, until: Any
) -> None:
    """Issue 15: the commit counted three turns of the event loop for the Block to
    record the acknowledgements the last delivery reports completed; when that took
    longer, a transaction committed outputs whose inputs' offsets came only with a later
    one (a duplicate after a crash). It now waits for the Block's word
    (Intake.acknowledged). The acknowledgements here take ten turns; librdkafka delivers
    only while a commit waits (and at the end), so every commit waits for deliveries.
    The input comes in three parts, each once the one before is acknowledged; one
    message is not Arroyo data and goes to the dead letter, in the transaction."""
    values = [encode(m) for m in make_run(28)]
    values[7] = b"not arroyo data"
    listener = make_listener(
        "kafka://h:9092/in?group=g",
        commit_interval_ms=0,
        poll_timeout_ms=5,
        delivery_journal=False,
    )
    publisher, dead = make_publisher("kafka://h:9092/out"), make_publisher("kafka://h:9092/dlq")
    exactly_once(listener, [publisher], dead)
    txn = listener.partitions.txn
    assert txn is not None and dead.transactions is txn
    fake_kafka.delivering = lambda: txn._gate or listener._stopping
    slow_acknowledgements(listener, turns=10)
    block = Block(listener, None, [publisher], dead_letter=dead)
    running = asyncio.create_task(block.run())
    for start in range(0, len(values), 10):
        fake_kafka.fill("in", values[start : start + 10])
        done = min(start + 10, len(values))
        await until(lambda n=done: block.stats.acknowledged >= n, 30, f"{done} acknowledged")
    block.stop()
    stats = await asyncio.wait_for(running, 30)
    assert (stats.published, stats.dead_lettered) == (len(values) - 1, 1)

    committed, with_outputs = 0, 0
    for number, transaction in enumerate(fake_kafka.transactions):
        end = transaction.offsets.get(("in", 0), committed)
        outputs = sorted(map(identity, transaction.produced), key=str)
        inputs = sorted(map(identity, values[committed:end]), key=str)
        assert outputs == inputs, f"transaction {number}: offsets {committed}..{end}"
        committed, with_outputs = end, with_outputs + bool(outputs)
    assert committed == len(values)
    assert with_outputs >= 3, "a commit for each part of the input"


async def test_a_transaction_call_that_never_returns_stops_the_worker(
    fake_kafka: Any, monkeypatch: pytest.MonkeyPatch, until: Any
) -> None:
    """librdkafka's send_offsets_to_transaction can wait for ever for a group coordinator
    that died with its broker, past its own timeout (confluentinc/librdkafka#5456,
    #5511): the worker went quiet, holding its partitions, until it was stopped. Now the
    commit fails once the call overran transaction.timeout.ms by STUCK_GRACE, the Block
    stops with TransactionError (a supervisor restarts the worker: a new producer finds
    the new coordinator), and nothing more is asked of the stuck producer."""
    from arroyo.brokers.kafka import transactions
    from arroyo.brokers.kafka.transactions import TransactionError
    from tests.unit.brokers.kafka.conftest import FakeProducer

    monkeypatch.setattr(transactions, "STUCK_GRACE", 0.2)
    release = threading.Event()
    calls: list[str] = []

    def never_returns(self: FakeProducer, *args: Any) -> None:
        calls.append("send_offsets_to_transaction")
        release.wait(60)

    def abort(self: FakeProducer, timeout: float = -1) -> None:
        calls.append("abort_transaction")

    monkeypatch.setattr(FakeProducer, "send_offsets_to_transaction", never_returns)
    monkeypatch.setattr(FakeProducer, "abort_transaction", abort)
    listener = make_listener(
        "kafka://h:9092/in?group=g", commit_interval_ms=0, delivery_journal=False
    )
    publisher = make_publisher("kafka://h:9092/out", **{"transaction.timeout.ms": 1000})
    exactly_once(listener, [publisher], None)
    fake_kafka.fill("in", [encode(m) for m in make_run(3)])
    block = Block(listener, None, [publisher])
    try:
        with pytest.raises(TransactionError, match=r"did not return within 1\.2 s"):
            await asyncio.wait_for(block.run(), 30)
    finally:
        release.set()
    assert calls == ["send_offsets_to_transaction"]  # no abort queued behind it
    txn = listener.partitions.txn
    assert txn is not None and txn.stuck


async def test_a_held_message_librdkafka_refuses_fails_alone_when_released(
    fake_kafka: Any,
) -> None:
    """Messages sent while a commit is under way are held, then produced in a new
    transaction. One that librdkafka refuses at once (too large) fails its own future
    with MessageTooLargeError when it is released; the one held behind it is produced."""
    txn = Transactions("kafka://h:9092/out", {"bootstrap.servers": "h:9092"}, str, "g")
    txn.core.producer = fake = ck.Producer({})
    txn.core._loop = asyncio.get_running_loop()
    fake.max_size = 10
    txn._gate = True  # a commit is under way
    big = txn.send("out", b"x" * 11, None, [], "big")
    small = txn.send("out", b"ok", None, [], "small")
    assert not big.done() and fake.queue == []
    txn._gate = False
    txn._release()
    assert isinstance(big.exception(), MessageTooLargeError)
    assert "big is 11 bytes" in str(big.exception())
    assert not small.done() and [m.value() for m, _ in fake.queue] == [b"ok"]
