"""FormatSender (the hook a publisher with ``format:`` sends through), with a produce
function of the test's own: records in order, one confirmation per message, failures as
the first failed record, a format asked once per message also when it is published again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from arroyo import Event, Start, Stop
from arroyo.errors import EncodeError, MessageTooLargeError, PublishError
from arroyo.formats import Record
from arroyo.formats import sending as sending_module
from arroyo.formats.sending import FormatSender
from arroyo.message import Message
from arroyo.runtime.ordering import NotSent


class Numbered:
    """A format writing ``records`` records per message (metadata ``records``), counting
    how often it was asked; a message with metadata ``bad`` raises ``bad``."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def encode(self, message: Message) -> list[Record]:
        self.asked.append(message.id)
        metadata = message.metadata if isinstance(message, Event) else {}
        if "bad" in metadata:
            raise metadata["bad"]  # type: ignore[misc]
        count = int(metadata.get("records", 1))  # type: ignore[arg-type]
        return [Record(f"{message.id}/{i}".encode()) for i in range(count)]


class Broker:
    """A produce function whose futures the test completes: ``sent`` in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, str, asyncio.Future[None]]] = []
        self.refuse: dict[bytes, Exception] = {}

    def produce(self, message: Message, record: Record, what: str) -> asyncio.Future[None]:
        if record.value in self.refuse:
            raise self.refuse[record.value]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent.append((record.value, what, done))
        return done

    def values(self) -> list[bytes]:
        return [value for value, _, _ in self.sent]

    def confirm(self, *errors: BaseException | None) -> None:
        """Complete the open sends in order: None confirms, an error fails."""
        open_sends = [done for _, _, done in self.sent if not done.done()]
        for done, error in zip(open_sends, errors, strict=False):
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)


def event(records: int, **metadata: Any) -> Event:
    return Event({"records": records, **metadata}, stream="run-1")


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_records_go_in_order_and_the_message_is_confirmed_once_all_are() -> None:
    fmt, broker = Numbered(), Broker()
    sender = FormatSender(fmt, "numbered", broker.produce)
    message = event(3)
    done = sender.send(message)
    assert broker.values() == [f"{message.id}/{i}".encode() for i in range(3)]
    assert "numbered record 2 of 3" in broker.sent[1][1]
    broker.confirm(None, None)
    await settle()
    assert not done.done()  # the third record is not confirmed yet
    broker.confirm(None)
    await settle()
    assert done.done() and done.result() is None
    assert sender.kept == 0


async def test_a_message_with_no_records_is_confirmed_at_once() -> None:
    broker = Broker()
    sender = FormatSender(Numbered(), "numbered", broker.produce)
    done = sender.send(event(0))
    assert done.done() and done.result() is None
    assert broker.sent == []


async def test_the_first_failed_record_decides_and_only_unconfirmed_ones_are_sent_again() -> None:
    fmt, broker = Numbered(), Broker()
    sender = FormatSender(fmt, "numbered", broker.produce)
    message = event(3)
    done = sender.send(message)
    broker.confirm(None, PublishError("broker away"), NotSent("behind"))
    await settle()
    with pytest.raises(PublishError, match="broker away"):
        done.result()
    assert sender.kept == 1

    again = sender.send(message)  # the runtime publishes it again
    assert fmt.asked == [message.id]  # not encoded again
    assert broker.values()[3:] == [f"{message.id}/1".encode(), f"{message.id}/2".encode()]
    broker.confirm(None, None)
    await settle()
    assert again.result() is None
    assert sender.kept == 0


async def test_a_single_record_message_returns_its_confirmation_and_keeps_it_on_failure() -> None:
    fmt, broker = Numbered(), Broker()
    sender = FormatSender(fmt, "numbered", broker.produce)
    message = event(1)
    done = sender.send(message)
    broker.confirm(NotSent("an earlier one failed"))
    await settle()
    assert isinstance(done.exception(), NotSent)
    sender.send(message)
    assert fmt.asked == [message.id]
    assert broker.values() == [f"{message.id}/0".encode()] * 2


async def test_a_permanent_failure_keeps_nothing_and_a_cancelled_record_cancels_the_message() -> (
    None
):
    fmt, broker = Numbered(), Broker()
    sender = FormatSender(fmt, "numbered", broker.produce)
    too_large = sender.send(event(2))
    broker.confirm(None, MessageTooLargeError("too large"))
    await settle()
    assert isinstance(too_large.exception(), MessageTooLargeError)
    assert sender.kept == 0

    abandoned = sender.send(event(2))
    broker.sent[-1][2].cancel()
    broker.confirm(None)
    await settle()
    assert abandoned.cancelled()
    assert sender.kept == 0


async def test_a_record_refused_at_once_ends_the_message_there() -> None:
    fmt, broker = Numbered(), Broker()
    sender = FormatSender(fmt, "numbered", broker.produce)
    message = event(3)
    broker.refuse[f"{message.id}/1".encode()] = PublishError("refused at once")
    done = sender.send(message)
    assert broker.values() == [f"{message.id}/0".encode()]  # not the third after a gap
    broker.confirm(None)
    await settle()
    with pytest.raises(PublishError, match="refused at once"):
        done.result()
    broker.refuse.clear()
    sender.send(message)
    assert broker.values()[1:] == [f"{message.id}/1".encode(), f"{message.id}/2".encode()]


async def test_what_a_format_cannot_carry_is_an_encode_error() -> None:
    broker = Broker()
    sender = FormatSender(Numbered(), "numbered", broker.produce)
    with pytest.raises(EncodeError, match="no f144 form"):
        sender.send(event(1, bad=EncodeError("no f144 form")))
    with pytest.raises(EncodeError) as caught:
        sender.send(event(1, bad=KeyError("oops")))  # a format's bug: not retried forever
    assert "format 'numbered' cannot write event" in str(caught.value)
    assert "KeyError" in str(caught.value)
    assert broker.sent == []


async def test_records_kept_for_messages_never_sent_again_are_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sending_module, "KEEP_MESSAGES", 2)
    fmt, broker = Numbered(), Broker()
    sender = FormatSender(fmt, "numbered", broker.produce)
    messages = [Start(stream="r"), event(1), Stop(stream="r")]
    sends = [sender.send(m) for m in messages]
    broker.confirm(PublishError("a"), PublishError("b"), PublishError("c"))
    await settle()
    assert all(isinstance(s.exception(), PublishError) for s in sends)
    assert sender.kept == 2
    sender.send(messages[0])  # forgotten (the oldest): encoded again
    assert fmt.asked == [m.id for m in messages] + [messages[0].id]
