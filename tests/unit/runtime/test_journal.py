"""The delivery journal counts exactly the deliveries that ended in the death of the
worker processing the message (worker processes are real: they are killed)."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from arroyo import Event
from arroyo.brokers import memory
from arroyo.brokers.memory import MemoryListener
from arroyo.errors import ConfigError
from arroyo.message import Message
from arroyo.runtime import Block, Operator, Output
from arroyo.runtime.journal import DeliveryJournal, default_folder, from_option
from arroyo.runtime.listener import Received
from arroyo.testing import Recorder, make_run

SCOPE = "kafka 127.0.0.1:9092 frames-g"


def by_source(received: Received) -> str:
    return str(received.source["key"])


def received(key: str, deliveries: int = 1) -> Received:
    return Received(b"", {"key": key}, None, deliveries)


def journal(root: Path) -> DeliveryJournal:
    return DeliveryJournal(root, SCOPE, by_source)


def die_while_processing(root: Path, *keys: str, signum: int = signal.SIGKILL) -> None:
    """A worker process that starts processing ``keys`` (finishing none) and is killed."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from pathlib import Path
        from arroyo.runtime.journal import DeliveryJournal
        from arroyo.runtime.listener import Received

        journal = DeliveryJournal(Path({str(root)!r}), {SCOPE!r}, lambda r: r.source["key"])
        journal.open()
        for key in sys.argv[1:]:
            journal.start(Received(b"", {{"key": key}}))
        os.kill(os.getpid(), {int(signum)})
        """
    )
    worker = subprocess.run([sys.executable, "-c", script, *keys], timeout=60)
    assert worker.returncode == -signum


def deliveries(j: DeliveryJournal, key: str) -> int:
    one = received(key)
    j.finish(j.start(one))
    return one.deliveries


def test_a_worker_killed_while_processing_makes_the_next_delivery_count(tmp_path: Path) -> None:
    die_while_processing(tmp_path, "frames:0:5")
    j = journal(tmp_path)
    j.open()
    try:
        assert deliveries(j, "frames:0:5") == 2
        assert deliveries(j, "frames:0:4") == 1  # not being processed when it died
        assert deliveries(j, "frames:1:5") == 1
        assert [p.name for p in j.folder.iterdir() if p.suffix == ".inflight"] == [j._path.name]  # type: ignore[union-attr]
    finally:
        j.close()


def test_a_running_worker_counts_a_death_once_it_looks_again(tmp_path: Path) -> None:
    j = journal(tmp_path)
    j.open()
    assert deliveries(j, "frames:0:5") == 1
    die_while_processing(tmp_path, "frames:0:5")  # another worker, while this one runs
    j.look_again()  # (Kafka: partitions assigned)
    assert deliveries(j, "frames:0:5") == 2
    j.close()


def test_a_segfault_counts_like_a_kill(tmp_path: Path) -> None:
    die_while_processing(tmp_path, "frames:0:5", signum=signal.SIGSEGV)
    j = journal(tmp_path)
    j.open()
    assert deliveries(j, "frames:0:5") == 2
    j.close()


def test_each_death_counts_once_even_when_its_worker_did_not_know_the_earlier_ones(
    tmp_path: Path,
) -> None:
    die_while_processing(tmp_path, "frames:0:5")
    die_while_processing(tmp_path, "frames:0:5")  # found the first file, did not count it
    j = journal(tmp_path)
    j.open()
    assert deliveries(j, "frames:0:5") == 3
    j.close()
    again = journal(tmp_path)
    again.open()  # the counts were kept for it (not settled), and not counted twice
    assert deliveries(again, "frames:0:5") == 3
    again.close()


def test_the_messages_of_a_live_worker_are_not_counted(tmp_path: Path) -> None:
    live = journal(tmp_path)
    live.open()
    live.start(received("frames:0:5"))  # being processed, in a worker that is alive
    other = journal(tmp_path)
    other.open()
    other.refresh()
    assert deliveries(other, "frames:0:5") == 1
    other.close()
    live.close()


def test_a_clean_stop_counts_only_what_was_still_being_processed(tmp_path: Path) -> None:
    first = journal(tmp_path)
    first.open()
    first.finish(first.start(received("frames:0:4")))
    first.start(received("frames:0:5"))  # abandoned at the end of a grace period (hung)
    first.close()
    second = journal(tmp_path)
    second.open()
    assert deliveries(second, "frames:0:4") == 1
    assert deliveries(second, "frames:0:5") == 2
    second.settled(received("frames:0:5"))
    second.close()
    assert not second.folder.exists()  # nothing left behind


def test_a_settled_message_is_forgotten_when_its_worker_stops(tmp_path: Path) -> None:
    die_while_processing(tmp_path, "frames:0:5")
    j = journal(tmp_path)
    j.open()
    poison = received("frames:0:5")
    j.finish(j.start(poison))
    assert poison.deliveries == 2
    assert j.suspect(poison)
    j.settled(poison)  # acknowledged (dead-lettered or processed), maybe not committed
    other = journal(tmp_path)
    other.open()  # a worker that gets it again before the commit still sees the count
    assert deliveries(other, "frames:0:5") == 2
    other.close()
    j.close()  # a clean stop: the listener has committed
    assert not j.folder.exists()
    again = journal(tmp_path)
    again.open()
    assert deliveries(again, "frames:0:5") == 1
    again.close()


def test_every_message_being_processed_counts_and_slots_grow(tmp_path: Path) -> None:
    keys = [f"frames:0:{i}" for i in range(40)]  # more than the file's first slots
    die_while_processing(tmp_path, *keys)
    j = journal(tmp_path)
    j.open()
    assert [deliveries(j, key) for key in keys] == [2] * 40
    j.close()


def test_a_long_key_is_kept_as_its_hash(tmp_path: Path) -> None:
    key = "t" * 1000 + ":0:5"
    die_while_processing(tmp_path, key)
    j = journal(tmp_path)
    j.open()
    assert deliveries(j, key) == 2
    assert deliveries(j, "t" * 1000 + ":0:6") == 1
    j.close()


def test_another_scope_does_not_share_counts(tmp_path: Path) -> None:
    die_while_processing(tmp_path, "frames:0:5")
    other = DeliveryJournal(tmp_path, "kafka 127.0.0.1:9092 other-g", by_source)
    other.open()
    assert deliveries(other, "frames:0:5") == 1
    other.close()


def test_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_folder() == tmp_path / "state" / "arroyo" / "deliveries"
    for off in (False, "false", "off"):
        assert from_option(off, "kafka://h/t", SCOPE, by_source) is None
    default = from_option("", "kafka://h/t", SCOPE, by_source)
    assert default is not None and default.root == default_folder() and not default.explicit
    chosen = from_option(str(tmp_path / "j"), "kafka://h/t", SCOPE, by_source)
    assert chosen is not None and chosen.root == tmp_path / "j" and chosen.explicit
    with pytest.raises(ConfigError, match="delivery_journal must be a folder or false"):
        from_option(3, "kafka://h/t", SCOPE, by_source)


def test_a_folder_that_cannot_be_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    chosen = DeliveryJournal(blocker / "journal", SCOPE, by_source, explicit=True)
    with pytest.raises(ConfigError, match=r"delivery journal .*/file/journal/.* cannot be used"):
        chosen.open()
    default = DeliveryJournal(blocker / "journal", SCOPE, by_source, explicit=False)
    with caplog.at_level(logging.WARNING, "arroyo.journal"):
        default.open()  # the default folder: a warning, and the broker's count as before
    assert "set the listener's delivery_journal to a writable folder" in caplog.text
    assert not default.active
    redelivered = received("frames:0:5", deliveries=3)
    assert default.start(redelivered) == -1 and redelivered.deliveries == 3
    default.close()


# -- in a Block ----------------------------------------------------------------------


class Concurrency(Operator):
    """Notes, for each Event, how many calls were running when it was processed."""

    def __init__(self) -> None:
        super().__init__()
        self.running = 0
        self.seen: dict[int, int] = {}

    async def process(self, message: Message) -> Output:
        self.running += 1
        try:
            await asyncio.sleep(0.002)
            if isinstance(message, Event):
                self.seen[message.metadata["i"]] = self.running
            return message
        finally:
            self.running -= 1


@pytest.fixture
def topic(unique_name: Callable[[str], str]) -> object:
    name = unique_name("frames")
    yield name
    memory.delete(name)


def listener_with_journal(topic: str, root: Path) -> MemoryListener:
    listener = MemoryListener(topic, stop_at_end=True)
    listener.journal = DeliveryJournal(root, SCOPE, lambda r: str(r.handle))
    return listener


def die_while_processing_entry(root: Path, index: int) -> None:
    """As die_while_processing, for a memory entry (its key is its index)."""
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from arroyo.runtime.journal import DeliveryJournal
        from arroyo.runtime.listener import Received

        journal = DeliveryJournal(Path({str(root)!r}), {SCOPE!r}, lambda r: str(r.handle))
        journal.open()
        journal.start(Received(b"", {{}}, {index}))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    assert subprocess.run([sys.executable, "-c", script], timeout=60).returncode == -9


async def test_a_block_dead_letters_what_killed_workers_max_deliveries_times(
    topic: str, tmp_path: Path
) -> None:
    messages = make_run(6)  # entry 3 is the Event with i=2
    for message in messages:
        memory.topic(topic).put(message)
    for _ in range(2):
        die_while_processing_entry(tmp_path, 3)
    out = Recorder()
    stats = await Block(
        listener_with_journal(topic, tmp_path), None, [out], dead_letter=out, max_deliveries=2
    ).run()
    assert [m.id for m in out.published] == [m.id for i, m in enumerate(messages) if i != 3]
    [letter] = out.dead_letters
    assert letter.source["index"] == 3
    assert "delivered 3 times (more than max_deliveries=2)" in letter.reason
    assert stats.dead_lettered == 1
    assert not journal(tmp_path).folder.exists()  # nothing left once all is settled


async def test_with_concurrency_a_suspect_is_processed_alone(topic: str, tmp_path: Path) -> None:
    messages = make_run(30)
    for message in messages:
        memory.topic(topic).put(message)
    die_while_processing_entry(tmp_path, 11)  # the Event with i=10
    operator = Concurrency()
    out = Recorder()
    await Block(
        listener_with_journal(topic, tmp_path), operator, [out], concurrency=4, max_deliveries=5
    ).run()
    assert [m.id for m in out.published] == [m.id for m in messages]
    assert operator.seen[10] == 1  # nothing else ran beside it
    assert max(operator.seen.values()) > 1  # the others ran side by side


class Batches(Operator):
    """Notes the Events it got in a batch (process_batch) and alone (process)."""

    def __init__(self) -> None:
        super().__init__()
        self.alone: list[int] = []
        self.batched: list[int] = []

    async def process(self, message: Message) -> Output:
        if isinstance(message, Event):
            self.alone.append(message.metadata["i"])
        return message

    async def process_batch(self, messages: Sequence[Message]) -> list[Output]:
        self.batched += [m.metadata["i"] for m in messages if isinstance(m, Event)]
        return list(messages)


async def test_a_batch_holding_a_suspect_is_processed_one_by_one(
    topic: str, tmp_path: Path
) -> None:
    messages = make_run(30)
    for message in messages:
        memory.topic(topic).put(message)
    die_while_processing_entry(tmp_path, 11)  # the Event with i=10
    operator, out = Batches(), Recorder()
    block = Block(listener_with_journal(topic, tmp_path), operator, [out], max_deliveries=5)
    await block.run()
    assert [m.id for m in out.published] == [m.id for m in messages]
    assert 10 in operator.alone  # a crash while it was in flight: never in a batch
    assert 10 not in operator.batched
    assert sorted(operator.alone + operator.batched) == list(range(30))


# -- the listeners' option -----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "handle", "source", "key"),
    [
        ("kafka://h:9092/frames?group=g", (("frames", 2), 17), {}, "frames:2:17"),
        ("redis://h:6379/frames?group=g", b"1700-0", {}, "1700-0"),
        ("amqp://u:p@h:5672/?queue=frames", None, {"message_id": "abc"}, "abc"),
        ("amqp://u:p@h:5672/?queue=frames", None, {}, None),  # no id: not journaled
    ],
)
def test_consumer_group_listeners_have_a_journal_by_default(
    url: str, handle: object, source: dict[str, str], key: str | None
) -> None:
    pytest.importorskip({"kafka": "confluent_kafka", "redis": "redis"}.get(url[:5], "aio_pika"))
    from arroyo.brokers import open_listener

    listener = open_listener(url)
    assert listener.journal is not None
    assert listener.journal.root == default_folder()
    assert listener.journal.key(Received(b"", source, handle)) == key
    assert open_listener(url, {"delivery_journal": False}).journal is None
    assert open_listener(url + "&delivery_journal=false").journal is None
    chosen = open_listener(url, {"delivery_journal": "/var/lib/arroyo/deliveries"}).journal
    assert chosen is not None and chosen.root == Path("/var/lib/arroyo/deliveries")


def test_the_scope_tells_groups_and_clusters_apart() -> None:
    pytest.importorskip("confluent_kafka")
    from arroyo.brokers import open_listener

    def folder(url: str) -> str:
        journal = open_listener(url).journal
        assert journal is not None
        return journal.folder.name

    one = folder("kafka://h:9092/frames?group=g")
    assert one.startswith("kafka_h_9092_g-")
    assert folder("kafka://h:9092/other?group=g") == one  # keys carry the topic
    assert folder("kafka://h:9092/frames?group=g2") != one
    assert folder("kafka://k:9092/frames?group=g") != one
