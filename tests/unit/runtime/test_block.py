"""The delivery contract of a Block, on memory connectors (no broker)."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from arroyo import DecodeError, Event, Start, decode, encode
from arroyo.brokers import memory
from arroyo.brokers.memory import MemoryListener, MemoryPublisher
from arroyo.message import Message
from arroyo.runtime import Block, Operator, Output, Publisher, RetryPolicy, run_blocks
from arroyo.runtime.listener import Intake, Listener, Received
from arroyo.testing import Recorder, make_run

FAST = RetryPolicy(attempts=3, initial=0.001, maximum=0.002)


def fill(name: str, count: int, stream: str = "run") -> list[Message]:
    """Put a run of ``count`` events (arroyo.testing.make_run) into memory topic ``name``."""
    messages = make_run(count, stream)
    for message in messages:
        memory.topic(name).put(message)
    return messages


class Held(Publisher):
    """Confirms only when the test says so."""

    def __init__(self) -> None:
        self.pending: list[tuple[Message, asyncio.Future[None]]] = []

    def send(self, message: Message) -> asyncio.Future[None]:
        done = asyncio.get_running_loop().create_future()
        self.pending.append((message, done))
        return done

    async def publish(self, message: Message) -> None:
        await self.send(message)


class Flaky(Recorder):
    """Fails its first ``failures`` publishes, then works."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def publish(self, message: Message) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("destination unavailable")
        await super().publish(message)


async def test_passthrough_publishes_everything_in_order_and_acks_it(
    topic: Callable[[str], str],
) -> None:
    source = topic("src")
    sent = fill(source, 100)
    out = Recorder()
    block = Block(MemoryListener(source, stop_at_end=True), publishers=[out], concurrency=4)
    stats = await block.run()
    assert out.published == sent
    assert memory.topic(source).acked() == set(range(len(sent)))
    assert (stats.received, stats.published, stats.acknowledged) == (102, 102, 102)


async def test_no_ack_before_every_publisher_confirmed_and_acks_in_input_order(
    topic: Callable[[str], str], until: Callable[..., Any]
) -> None:
    source = topic("src")
    fill(source, 0)  # Start, Stop
    held, recorder = Held(), Recorder()
    block = Block(MemoryListener(source, stop_at_end=True), publishers=[held, recorder])
    running = asyncio.create_task(block.run())
    await until(lambda: len(held.pending) == 2 and len(recorder.published) == 2)
    assert memory.topic(source).acked() == set()  # the recorder confirmed, the held one not
    held.pending[1][1].set_result(None)  # Stop confirmed everywhere, Start not yet
    for _ in range(20):  # give an out-of-order ack every chance to happen
        await asyncio.sleep(0)
    assert memory.topic(source).acked() == set()  # acks follow input order
    held.pending[0][1].set_result(None)
    await asyncio.wait_for(running, 5)
    assert memory.topic(source).acked() == {0, 1}


async def test_operator_failure_goes_to_dead_letter_after_retries_and_the_next_is_processed(
    topic: Callable[[str], str],
) -> None:
    source = topic("src")
    sent = fill(source, 3)

    class FailOnSecondEvent(Operator):
        calls: int = 0

        async def process(self, message: Message) -> Output:
            if isinstance(message, Event) and message.metadata["i"] == 1:
                self.calls += 1
                raise ValueError("cannot integrate frame 1")
            return message

    operator, out, dead = FailOnSecondEvent(), Recorder(), Recorder()
    block = Block(
        MemoryListener(source, stop_at_end=True), operator, [out], dead_letter=dead, retry=FAST
    )
    stats = await block.run()
    assert operator.calls == 3
    assert [m.id for m in out.published] == [m.id for m in sent if m is not sent[2]]
    [letter] = dead.dead_letters
    assert dead.published == []  # dead letters go through publish_dead_letter
    assert letter.error == "ValueError"
    assert letter.reason == "cannot integrate frame 1"
    assert letter.attempts == 3
    assert letter.source == {"url": f"memory://{source}", "index": 2}
    assert decode(letter.data) == sent[2]  # the original bytes
    assert memory.topic(source).acked() == set(range(len(sent)))
    assert (stats.retried, stats.dead_lettered) == (2, 1)


async def test_undecodable_bytes_go_to_dead_letter_with_the_reason(
    topic: Callable[[str], str],
) -> None:
    source = topic("src")
    memory.topic(source).append(b"not avro at all")
    memory.topic(source).put(Start({"ok": True}))
    out, dead = Recorder(), Recorder()
    block = Block(MemoryListener(source, stop_at_end=True), publishers=[out], dead_letter=dead)
    await block.run()
    [letter] = dead.dead_letters
    assert dead.published == []  # dead letters go through publish_dead_letter
    assert letter.data == b"not avro at all"
    assert letter.error == DecodeError.__name__
    assert "not Arroyo data" in letter.reason
    assert len(out.published) == 1
    assert memory.topic(source).acked() == {0, 1}


async def test_publisher_that_fails_then_recovers_loses_nothing(
    topic: Callable[[str], str],
) -> None:
    source = topic("src")
    sent = fill(source, 20)
    flaky = Flaky(failures=7)
    block = Block(
        MemoryListener(source, stop_at_end=True),
        publishers=[flaky],
        publish_retry=RetryPolicy(None, 0.001, 0.002),
    )
    stats = await block.run()
    assert sorted(m.id for m in flaky.published) == sorted(m.id for m in sent)
    assert stats.retried == 7
    assert stats.dead_lettered == stats.dropped == 0
    assert memory.topic(source).acked() == set(range(len(sent)))


async def test_slow_operator_with_fast_source_keeps_the_queue_within_its_size(
    topic: Callable[[str], str], until: Callable[..., Any]
) -> None:
    source = topic("src")
    fill(source, 300)
    gate = asyncio.Event()

    class Slow(Operator):
        async def process(self, message: Message) -> Output:
            await gate.wait()
            return message

    out = Recorder()
    block = Block(
        MemoryListener(source, stop_at_end=True), Slow(), [out], queue_size=10, concurrency=2
    )
    running = asyncio.create_task(block.run())
    await until(lambda: block.intake.held == 10)
    await asyncio.sleep(0.05)  # give the source every chance to overrun the queue
    assert block.intake.held == 10
    # The listener holds the 11th message, waiting for room: it took no more.
    assert memory.topic(source).groups["default"].next == 11
    gate.set()
    await asyncio.wait_for(running, 10)
    assert block.intake.peak == 10
    assert len(out.published) == 302


async def test_none_from_process_publishes_nothing(topic: Callable[[str], str]) -> None:
    source = topic("src")
    sent = fill(source, 10)

    class OnlyStarts(Operator):
        async def process(self, message: Message) -> Output:
            return message if isinstance(message, Start) else None

    out = Recorder()
    stats = await Block(MemoryListener(source, stop_at_end=True), OnlyStarts(), [out]).run()
    assert out.published == [sent[0]]
    assert stats.acknowledged == len(sent)
    assert None not in out.published


async def test_several_outputs_and_invalid_outputs(topic: Callable[[str], str]) -> None:
    source = topic("src")
    sent = fill(source, 2)

    class Splits(Operator):
        async def process(self, message: Message) -> Output:
            if isinstance(message, Event) and message.metadata["i"] == 1:
                return "not a message"  # type: ignore[return-value]
            return [message, message]

    out, dead = Recorder(), Recorder()
    await Block(
        MemoryListener(source, stop_at_end=True), Splits(), [out], dead_letter=dead, retry=FAST
    ).run()
    assert [m.id for m in out.published] == [m.id for m in sent if m is not sent[2] for _ in "ab"]
    [letter] = dead.dead_letters
    assert dead.published == []  # dead letters go through publish_dead_letter
    assert "operator returned str" in letter.reason
    assert letter.attempts == 1  # not retried: retrying cannot help


async def test_concurrent_operator_calls_still_publish_in_input_order(
    topic: Callable[[str], str],
) -> None:
    source = topic("src")
    sent = fill(source, 50)
    active = 0
    peak = 0

    class Jittery(Operator):
        async def process(self, message: Message) -> Output:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.001 * (message.seq % 5))
            active -= 1
            return message

    out = Recorder()
    await Block(MemoryListener(source, stop_at_end=True), Jittery(), [out], concurrency=8).run()
    assert out.published == sent
    assert peak == 8


async def test_message_delivered_too_often_goes_to_dead_letter(
    topic: Callable[[str], str],
) -> None:
    source = topic("src")
    fill(source, 0)
    group = memory.topic(source).groups.setdefault("default", memory._Group())
    group.deliveries[0] = 5  # it crashed five workers already
    out, dead = Recorder(), Recorder()
    await Block(
        MemoryListener(source, stop_at_end=True),
        publishers=[out],
        dead_letter=dead,
        max_deliveries=5,
    ).run()
    [letter] = dead.dead_letters
    assert dead.published == []  # dead letters go through publish_dead_letter
    assert "delivered 6 times" in letter.reason
    assert [m.kind for m in out.published] == ["stop"]


async def test_sigterm_mid_stream_loses_nothing_and_returns_0(
    topic: Callable[[str], str],
) -> None:
    source, sink = topic("src"), topic("dst")
    sent = fill(source, 500)
    halfway = asyncio.Event()

    class Counting(Operator):
        seen = 0

        async def process(self, message: Message) -> Output:
            self.seen += 1
            if self.seen == 100:
                halfway.set()
            await asyncio.sleep(0)
            return message

    first = Block(
        MemoryListener(source), Counting(), [MemoryPublisher(sink)], queue_size=20, name="first"
    )
    running = asyncio.create_task(run_blocks([first]))
    await asyncio.wait_for(halfway.wait(), 10)
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(running, 10) == 0
    acked = memory.topic(source).acked()
    assert 100 <= len(acked) < len(sent)
    published = {m.id for m in memory.topic(sink).messages()}
    assert {sent[i].id for i in acked} <= published  # every acked message was published
    # A new worker of the group gets what the first one did not acknowledge.
    second = Block(
        MemoryListener(source, stop_at_end=True), publishers=[MemoryPublisher(sink)], name="2nd"
    )
    await second.run()
    assert {m.id for m in memory.topic(sink).messages()} == {m.id for m in sent}


async def test_grace_period_over_leaves_unfinished_work_unacknowledged(
    topic: Callable[[str], str], until: Callable[..., Any]
) -> None:
    source = topic("src")
    fill(source, 5)

    class Stuck(Operator):
        async def process(self, message: Message) -> Output:
            if isinstance(message, Event):
                await asyncio.Event().wait()
            return message

    block = Block(MemoryListener(source), Stuck(), [Recorder()], grace_period=0.1)
    running = asyncio.create_task(block.run())
    await until(lambda: block.stats.acknowledged == 1)
    block.stop()
    await asyncio.wait_for(running, 5)
    assert memory.topic(source).acked() == {0}
    assert list(memory.topic(source).groups["default"].redeliver)[:1] == [1]


async def test_operators_can_run_in_a_thread_pool(topic: Callable[[str], str]) -> None:
    import threading

    from arroyo.runtime import BlockingOperator

    source = topic("src")
    sent = fill(source, 5)
    threads: set[str] = set()

    class Blocking(BlockingOperator):
        def compute(self, message: Message) -> Output:
            threads.add(threading.current_thread().name)
            return message

    out = Recorder()
    await Block(MemoryListener(source, stop_at_end=True), Blocking(), [out]).run()
    assert out.published == sent
    assert threading.main_thread().name not in threads


def double_payload(message: Message) -> Output:
    """A module-level function, so a process pool can import it."""
    if isinstance(message, Event):
        return Event(message.metadata, bytes(message.payload) * 2, stream=message.stream)
    return message


async def test_function_operator_in_a_process_pool(topic: Callable[[str], str]) -> None:
    from arroyo.runtime import FunctionOperator

    source = topic("src")
    fill(source, 3)
    out = Recorder()
    operator = FunctionOperator(double_payload, executor="process", workers=1)
    await Block(MemoryListener(source, stop_at_end=True), operator, [out]).run()
    assert [m.payload for m in out.published if isinstance(m, Event)] == [
        b"f%d" % i * 2 for i in range(3)
    ]


async def test_invalid_messages_can_be_dropped_by_policy(topic: Callable[[str], str]) -> None:
    source = topic("src")
    memory.topic(source).append(b"garbage")
    memory.topic(source).put(Start({"ok": True}))

    class Fails(Operator):
        async def process(self, message: Message) -> Output:
            raise RuntimeError("operator failures still go to the dead letter")

    dead = Recorder()
    stats = await Block(
        MemoryListener(source, stop_at_end=True),
        Fails(),
        dead_letter=dead,
        on_invalid="drop",
        retry=FAST,
    ).run()
    assert stats.dropped == 1  # the garbage
    assert [letter.error for letter in dead.dead_letters] == ["RuntimeError"]
    assert dead.published == []
    assert memory.topic(source).acked() == {0, 1}


async def test_a_parser_bug_dead_letters_the_message_instead_of_retrying(
    topic: Callable[[str], str],
) -> None:
    source = topic("src")
    fill(source, 1)

    class Buggy:
        calls = 0

        def parse(self, data: bytes | list[bytes]) -> Message:
            self.calls += 1
            raise KeyError("frame_number")

    parser = Buggy()
    dead = Recorder()
    listener = MemoryListener(source, stop_at_end=True, parser=parser)  # type: ignore[arg-type]
    await Block(listener, dead_letter=dead).run()
    assert parser.calls == 3  # once per message: not retried
    assert all("Buggy could not parse" in letter.reason for letter in dead.dead_letters)
    assert all(letter.invalid for letter in dead.dead_letters)
    assert dead.published == []


async def test_stop_before_run_stops_at_once(topic: Callable[[str], str]) -> None:
    source = topic("src")
    fill(source, 3)
    block = Block(MemoryListener(source), publishers=[Recorder()])
    block.stop()  # e.g. SIGTERM while the worker was still importing its config
    stats = await asyncio.wait_for(block.run(), 5)
    assert stats.acknowledged == stats.received <= 5


async def test_an_outage_is_logged_as_one_line_not_a_storm(
    topic: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    source = topic("src")
    fill(source, 50)
    flaky = Flaky(failures=200)
    block = Block(
        MemoryListener(source, stop_at_end=True),
        publishers=[flaky],
        publish_retry=RetryPolicy(None, 0.0001, 0.0002),
        concurrency=1,
    )
    with caplog.at_level("WARNING", logger="arroyo.block"):
        await block.run()
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert block.stats.retried == 200
    assert len(retries) <= 3


async def test_passthrough_forwards_the_bytes_as_received(topic: Callable[[str], str]) -> None:
    source, sink = topic("src"), topic("dst")
    fill(source, 2)
    await Block(MemoryListener(source, stop_at_end=True), None, [MemoryPublisher(sink)]).run()
    for sent, forwarded in zip(
        memory.topic(source).entries, memory.topic(sink).entries, strict=True
    ):
        assert forwarded is sent  # not decoded and encoded again: the very same bytes


async def test_an_operator_that_may_change_messages_gets_them_encoded_again(
    topic: Callable[[str], str],
) -> None:
    source, sink = topic("src"), topic("dst")
    fill(source, 1)

    class Tags(Operator):  # changes metadata in place (it should not): still published right
        async def process(self, message: Message) -> Output:
            if isinstance(message, Event):
                message.metadata["tagged"] = True
            return message

    await Block(MemoryListener(source, stop_at_end=True), Tags(), [MemoryPublisher(sink)]).run()
    [_, event, _] = memory.topic(sink).messages()
    assert isinstance(event, Event)
    assert event.metadata == {"i": 0, "tagged": True}


async def test_a_failing_listener_gets_the_grace_period_not_more(
    topic: Callable[[str], str],
) -> None:
    class Broken(MemoryListener):
        async def start(self, intake: Any) -> None:
            await super().start(intake)  # hands over what there is...
            raise ConnectionError("lost the broker for good")  # ...then fails

    class Stuck(Operator):
        async def process(self, message: Message) -> Output:
            await asyncio.Event().wait()
            return message

    source = topic("src")
    fill(source, 1)
    block = Block(Broken(source, stop_at_end=True), Stuck(), grace_period=0.1)
    with pytest.raises(ConnectionError, match="for good"):
        await asyncio.wait_for(block.run(), 5)


async def test_messages_confirmed_together_are_acknowledged_in_one_batch(
    topic: Callable[[str], str], until: Callable[..., Any]
) -> None:
    source = topic("src")
    fill(source, 8)  # Start, 8 Events, Stop

    class Batches(MemoryListener):
        def __init__(self) -> None:
            super().__init__(source, stop_at_end=True)
            self.batches: list[list[int]] = []

        async def ack_many(self, received: Any) -> list[BaseException | None]:
            self.batches.append([r.handle for r in received])
            return await super().ack_many(received)

    held = Held()
    listener = Batches()
    running = asyncio.create_task(Block(listener, publishers=[held]).run())
    await until(lambda: len(held.pending) == 10)
    for _, confirmed in held.pending:
        confirmed.set_result(None)
    await asyncio.wait_for(running, 5)
    assert listener.batches == [list(range(10))]


class _SlowStop(MemoryListener):
    """Its stop() waits for a future that only the stopping task holds, as a client's
    stop may; the test holds it weakly, to finish it."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.asked = asyncio.Event()
        self.waiting: weakref.ref[asyncio.Future[None]] | None = None

    async def stop(self) -> None:
        future = asyncio.get_running_loop().create_future()
        self.waiting = weakref.ref(future)
        self.asked.set()
        await future
        await super().stop()


async def test_max_messages_stops_the_listener_in_a_task_the_block_holds(
    topic: Callable[[str], str],
) -> None:
    source = topic("src")
    sent = fill(source, 3)
    listener, out = _SlowStop(source), Recorder()
    block = Block(listener, publishers=[out], max_messages=2)
    running = asyncio.create_task(block.run())
    await asyncio.wait_for(listener.asked.wait(), 5)
    gc.collect()  # a task nobody holds would be collected here, its stop() never ending
    assert listener.waiting is not None
    waiting = listener.waiting()
    assert waiting is not None, "the stop() of --count was collected while it waited"
    waiting.set_result(None)
    stats = await asyncio.wait_for(running, 5)
    assert out.published == sent[:2]
    assert stats.received == 2


class _OneBatch(Listener):
    """Hands all its messages over in one offer_many call, as the Kafka listener hands a
    consume() batch; then ends."""

    def __init__(self, data: list[bytes]) -> None:
        super().__init__()
        self.data = data
        self.taken = -1
        self.acked: list[int] = []

    async def start(self, intake: Intake) -> None:
        items = [Received(d, {"url": "test://", "i": i}, i) for i, d in enumerate(self.data)]
        self.taken = intake.offer_many(items)

    async def stop(self) -> None:
        pass

    async def ack(self, received: Received) -> None:
        self.acked.append(received.handle)


@pytest.mark.parametrize("limit", [None, 4])
async def test_a_batch_handed_over_at_once_is_counted_and_cut_at_max_messages(
    limit: int | None,
) -> None:
    sent = make_run(8)
    listener, out = _OneBatch([encode(m) for m in sent]), Recorder()
    stats = await Block(listener, publishers=[out], max_messages=limit).run()
    expected = len(sent) if limit is None else limit
    assert listener.taken == expected
    assert out.published == sent[:expected]
    assert listener.acked == list(range(expected))
    assert stats.received == stats.acknowledged == expected
    assert stats.received_bytes == sum(len(encode(m)) for m in sent[:expected])


class _HandsBack(_OneBatch):
    """Hands 3 messages over, takes the last 2 back (as a revoked Kafka partition's are),
    then hands over everything from the second on."""

    async def start(self, intake: Intake) -> None:
        items = [Received(d, {"url": "test://", "i": i}, i) for i, d in enumerate(self.data)]
        assert intake.offer_many(items[:3]) == 3
        self.back = [r.handle for r in intake.hand_back(lambda r: r.handle >= 1)]
        self.taken = intake.offer_many(items[1:])


async def test_messages_handed_back_do_not_count_towards_max_messages() -> None:
    sent = make_run(6)
    listener, out = _HandsBack([encode(m) for m in sent]), Recorder()
    stats = await Block(listener, publishers=[out], max_messages=4).run()
    assert listener.back == [1, 2]
    assert listener.taken == 3
    assert out.published == sent[:4]
    assert listener.acked == [0, 1, 2, 3]
    assert (stats.received, stats.handed_back, stats.acknowledged) == (6, 2, 4)
