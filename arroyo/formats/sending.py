"""Sending a message as its wire format's records: the hook a publisher's send goes through
when it has ``format: NAME`` (:mod:`arroyo.formats`).

:class:`FormatSender` is broker-independent: it asks the format for the records of each
message and hands them, in order, to a produce function of the publisher's (one broker
message each), and gives back one future per message:

- it completes once every record of the message is confirmed; at once for a message
  the format writes nothing for (an empty list);
- it fails as the first record (in order) that failed: that failure decides whether
  the runtime publishes the message again (a retryable error, or
  :class:`~arroyo.runtime.ordering.NotSent`) or dead-letters it (a PermanentError); a
  cancelled record cancels it (the publisher abandoned the work);
- a message the format cannot carry raises EncodeError from :meth:`FormatSender.send`
  (a dead letter, as for Arroyo's own encoding); any other exception of a format's
  ``encode`` becomes one too (encoding again cannot help).

A format is asked once per message (its contract: formats keep state per run, a
bluesky-kafka descriptor before the first event): when a message is published again
after a retryable failure, the records that were not confirmed are sent again, not
encoded again. Records already confirmed are not sent twice; a record written by the
broker although its send failed (a request already on the wire) may be. Those kept
records are held until the message is sent again, at most :data:`KEEP_MESSAGES`
messages and :data:`KEEP_BYTES` bytes (the oldest are forgotten first: a message the
runtime gave up on is never sent again; one forgotten and still sent again is encoded
again).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from arroyo.errors import ArroyoError, EncodeError, PermanentError

if TYPE_CHECKING:
    from arroyo.formats import Record, WireFormat
    from arroyo.message import Message

KEEP_MESSAGES = 10_000
"""At most this many messages' unconfirmed records are kept for a publication again."""
KEEP_BYTES = 256 << 20
"""... and at most this many bytes of them."""

Produce = Callable[["Message", "Record", str], "asyncio.Future[None]"]
"""A publisher's produce function: enqueue ``record`` of ``message`` now, behind what was
enqueued before (``what`` names it in errors); return what completes with its
confirmation. It may raise (the record is refused at once: too large...)."""


class FormatSender:
    """Sends messages as ``fmt``'s records through ``produce`` (see the module
    documentation). ``name``: the format's name, in errors."""

    __slots__ = ("_kept", "_kept_bytes", "format", "name", "produce")

    def __init__(self, fmt: WireFormat, name: str, produce: Produce) -> None:
        self.format = fmt
        self.name = name
        self.produce = produce
        self._kept: OrderedDict[str, list[Record]] = OrderedDict()
        self._kept_bytes = 0

    def send(self, message: Message) -> asyncio.Future[None]:
        """Enqueue the records of ``message`` now, in order; return what completes once
        they are all confirmed (see the module documentation). Raises EncodeError for a
        message the format cannot carry."""
        records = self._take(message.id)
        if records is None:
            records = self._encode(message)
        if not records:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        sends = self._produce(message, records)
        if len(records) == 1:  # the record's own confirmation is the message's
            sent = sends[0]
            sent.add_done_callback(lambda _: self._settled(message.id, records, sends))
            return sent
        combined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        left = len(sends)

        def one(_: asyncio.Future[None]) -> None:
            nonlocal left
            left -= 1
            if left == 0:
                outcome = self._settled(message.id, records, sends)
                if combined.done():
                    return
                if outcome is None:
                    combined.set_result(None)
                elif isinstance(outcome, asyncio.CancelledError):
                    combined.cancel()
                else:
                    combined.set_exception(outcome)

        for sent in sends:
            sent.add_done_callback(one)
        return combined

    def _encode(self, message: Message) -> list[Record]:
        try:
            return self.format.encode(message)
        except ArroyoError:
            raise
        except Exception as exc:
            raise EncodeError(
                f"format {self.name!r} cannot write {message.kind} {message.id}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _produce(self, message: Message, records: list[Record]) -> list[asyncio.Future[None]]:
        """Enqueue each record, in order. One refused at once ends the message's
        sends there (a record after it would be written after a gap): its failure is
        the last send, and the records after it count as not sent."""
        sends: list[asyncio.Future[None]] = []
        count = len(records)
        for index, record in enumerate(records):
            what = f"{message.kind} {message.id} ({self.name} record {index + 1} of {count})"
            try:
                sends.append(self.produce(message, record, what))
            except Exception as exc:
                refused: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                refused.set_exception(exc)
                sends.append(refused)
                break
        return sends

    def _settled(
        self, message_id: str, records: list[Record], sends: list[asyncio.Future[None]]
    ) -> BaseException | None:
        """Every send of a message is done: its outcome (None: all confirmed; else the
        first failure in record order, a CancelledError for a cancelled record). After a
        retryable failure, keep the records not confirmed for the next publication."""
        first: BaseException | None = None
        unconfirmed: list[Record] = []
        for record, sent in zip(records, sends, strict=False):
            error = asyncio.CancelledError() if sent.cancelled() else sent.exception()
            if error is not None:
                unconfirmed.append(record)
                if first is None:
                    first = error
        unconfirmed += records[len(sends) :]
        retryable = first is not None and not isinstance(
            first, PermanentError | asyncio.CancelledError
        )
        if retryable:
            self._keep(message_id, unconfirmed)
        return first

    def _keep(self, message_id: str, records: list[Record]) -> None:
        self._kept[message_id] = records
        self._kept_bytes += sum(len(r.value) for r in records)
        while self._kept and (len(self._kept) > KEEP_MESSAGES or self._kept_bytes > KEEP_BYTES):
            _, forgotten = self._kept.popitem(last=False)
            self._kept_bytes -= sum(len(r.value) for r in forgotten)

    def _take(self, message_id: str) -> list[Record] | None:
        records = self._kept.pop(message_id, None)
        if records is not None:
            self._kept_bytes -= sum(len(r.value) for r in records)
        return records

    @property
    def kept(self) -> int:
        """How many messages' records are kept for a publication again."""
        return len(self._kept)
