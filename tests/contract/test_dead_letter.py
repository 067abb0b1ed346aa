"""Poison messages go to the dead letter, on every broker (see brokers.py).

Bytes that are not Arroyo data (garbage, empty, truncated, an unknown schema) and an
Event that makes the operator raise (after its retries) are put between good messages.
A Block delivers every good message in order and dead-letters each poison once, on the
broker's own dead-letter destination, as its original bytes with the error, the reason,
the attempts, the block and where it came from; it acknowledges everything it took, the
poison too (the group's next listener gets only what came after). With ``check: lazy``,
an Event whose identity reads and whose metadata does not is dead-lettered when the
operator reads it, alone.
"""

from __future__ import annotations

from collections.abc import Callable

from arroyo import DecodeError, Event, Run, encode
from arroyo.brokers import open_listener, open_publisher
from arroyo.codec import Codec
from arroyo.message import Message
from arroyo.runtime import Block, Operator, Output, RetryPolicy
from arroyo.runtime.parser import AvroParser
from arroyo.testing import Recorder, bomb, make_run
from tests.contract.adapters import Broker
from tests.contract.harness import run_block, until


class Explode(Operator):
    """Raises on Events marked ``explode``; passes everything else on."""

    async def process(self, message: Message) -> Output:
        if isinstance(message, Event) and message.metadata.get("explode"):
            raise ValueError(f"cannot integrate frame {message.seq}: detector saturated")
        return message


def poisoned_run() -> tuple[list[Message], list[tuple[str, bytes]], list[bytes]]:
    """A run with poison between its messages: the good messages, the poison (a label
    and its bytes), and every input in the order written."""
    run = Run("scan-9")
    good: list[Message] = [run.start({"sample": "Si"})]
    good += [run.event({"i": i}, b"frame %d" % i) for i in range(10)]
    exploding = run.event({"i": 10, "explode": True}, b"saturated frame")
    truncated = encode(run.event({"i": 11}, b"x" * 100))[:-7]
    unknown = encode(run.event({"i": 12}))
    poison = [
        ("garbage", b"GARBAGE, not Avro at all"),
        ("empty", b""),
        ("truncated", truncated),
        ("unknown schema", unknown[:2] + bytes(8) + unknown[10:]),
        ("exploding", encode(exploding)),
    ]
    good.append(run.stop())
    inputs: list[bytes] = []
    left = list(poison)
    for index, message in enumerate(good):
        inputs.append(encode(message))
        if index % 2 == 0 and left:
            inputs.append(left.pop(0)[1])
    return good, poison, inputs


class TestDeadLetter:
    concern = "dead letter"

    async def test_poison_goes_to_the_dead_letter_and_the_rest_goes_on_in_order(
        self, broker: Broker, unique_name: Callable[[str], str]
    ) -> None:
        source, dead = await broker.source(), await broker.destination("dead")
        group = unique_name("group")
        good, poison, inputs = poisoned_run()
        out = Recorder()
        listener = open_listener(broker.listener_url(source, group))
        block = Block(
            listener,
            Explode(),
            [out],
            name="integrate",
            dead_letter=open_publisher(broker.publisher_url(dead)),
            retry=RetryPolicy(attempts=2, initial=0.001, maximum=0.002),
            max_messages=len(inputs),
        )
        where: list[str] = []

        async def feed() -> None:
            where.extend(await broker.write(source, inputs))

        stats = await run_block(block, feed())
        assert out.published == good
        assert (stats.received, stats.published) == (len(inputs), len(good))
        assert (stats.dead_lettered, stats.acknowledged) == (len(poison), len(inputs))

        async def all_letters() -> list[tuple[bytes, dict[str, str]]]:
            letters = await broker.letters(dead)
            return letters if len(letters) >= len(poison) else []

        letters = await until(all_letters, "every dead letter")
        written = dict(zip(where, inputs, strict=True))
        found = {}
        for data, headers in letters:
            assert data == written[broker.where(headers)], "not the original bytes"
            assert headers["arroyo.source.url"] == listener.name
            assert headers["arroyo.dead-letter.block"] == "integrate"
            found[data] = headers
        assert len(letters) == len(found) == len(poison)  # each one once
        by_label = {label: found[data] for label, data in poison}
        for label in ("garbage", "empty", "truncated", "unknown schema"):
            assert by_label[label]["arroyo.dead-letter.error"] == DecodeError.__name__, label
            assert by_label[label]["arroyo.dead-letter.attempts"] == "1", label
        assert by_label["garbage"]["arroyo.dead-letter.reason"].startswith("not Arroyo data")
        assert "truncated" in by_label["truncated"]["arroyo.dead-letter.reason"]
        assert "schema" in by_label["unknown schema"]["arroyo.dead-letter.reason"]
        exploding = by_label["exploding"]
        assert exploding["arroyo.dead-letter.error"] == "ValueError"
        assert exploding["arroyo.dead-letter.reason"] == (
            "cannot integrate frame 11: detector saturated"
        )
        assert exploding["arroyo.dead-letter.attempts"] == "2"
        if broker.declared.acknowledges:
            # The poison was acknowledged at the broker with the rest: the group's next
            # listener gets only what comes after.
            later = make_run(1, stream="later")
            again = Recorder()
            second = Block(open_listener(broker.listener_url(source, group)), None, [again])
            second.max_messages = len(later)
            await run_block(second, broker.write(source, [encode(m) for m in later]))
            assert again.published == later

    async def test_with_check_lazy_an_event_bad_past_its_identity_is_dead_lettered_when_read(
        self, broker: Broker, unique_name: Callable[[str], str]
    ) -> None:
        source, dead = await broker.source(), await broker.destination("dead")
        run = Run("scan-lazy")
        good = [run.start({}), *(run.event({"i": i}, b"frame") for i in range(4)), run.stop()]
        nested = bomb("nesting", event=True)  # its identity reads; its metadata does not
        inputs = [encode(m) for m in good]
        inputs.insert(2, nested)
        out = Recorder()
        lazy = AvroParser(Codec(lazy=True))
        block = Block(
            open_listener(broker.listener_url(source, unique_name("group")), None, lazy),
            Explode(),  # reads the metadata of every Event
            [out],
            name="lazy",
            dead_letter=open_publisher(broker.publisher_url(dead)),
            max_messages=len(inputs),
        )
        stats = await run_block(block, broker.write(source, inputs))
        assert out.published == good
        assert (stats.dead_lettered, stats.acknowledged) == (1, len(inputs))
        [(data, headers)] = await until(lambda: broker.letters(dead), "the dead letter")
        assert data == nested
        assert headers["arroyo.dead-letter.error"] == DecodeError.__name__
        assert headers["arroyo.dead-letter.attempts"] == "1"
        assert "nesting deeper than 64 levels" in headers["arroyo.dead-letter.reason"]
