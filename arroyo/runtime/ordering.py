"""Input order at the destination, also when a publish fails and is retried.

Outputs are sent without waiting for the confirmations of earlier ones (pipelined), so
when one send fails, later ones may already be on their way. Two rules together keep
the destination in send order:

1. **The runtime** (:class:`OrderedSends`, one per publisher): once a send has failed,
   later outputs are *held back*, not given to the publisher, until the settler (which
   confirms outputs in input order) has re-published the failed one and everything
   given before the hold; then the held ones are sent, in order. A failure is noticed
   at the next send (the last send given has failed) or when the settler sees it,
   whichever comes first.
2. **The publisher** (the contract of :meth:`Publisher.send`, with :class:`FailStop` as
   the helper connectors use): a send that was given after a send that failed is not
   written, but fails too (with :class:`NotSent`), unless every earlier send had
   completed when it was given. So what was in flight behind a failure never reaches
   the destination ahead of the failed message's re-publication, even when the
   connection comes back before they are flushed; and since a publisher fails them at
   the latest when it would write them, the last send given ends up failed, which is
   what rule 1 checks.

Why no inversion remains: let ``m`` be the first send that fails. Every send given to
the publisher after ``m`` was given either while ``m`` (or one after it) was still
outstanding, and rule 2 fails it unwritten; or after everything before it had
completed, which includes ``m``'s failure, and then rule 1 holds it back. The settler
re-publishes ``m``, then each later failed send, one after the other in input order,
and only then releases the held ones. What remains possible is what a destination
does by itself: accepting a later message while refusing (not losing) an earlier one
on the same connection, e.g. a RabbitMQ nack; retrying then puts the refused one after.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections import deque
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Protocol

from arroyo.errors import PermanentError, PublishError

if TYPE_CHECKING:
    from arroyo.message import Message


class Sender(Protocol):
    """What this module (and the settler) need of a
    :class:`~arroyo.runtime.publisher.Publisher`, which imports this module."""

    @property
    def name(self) -> str:
        """As :attr:`arroyo.runtime.publisher.Publisher.name`."""

    def send(self, message: Message, wire: bytes | None = None) -> Awaitable[None]:
        """As :meth:`arroyo.runtime.publisher.Publisher.send`."""

    def send_many(
        self, messages: Sequence[Message], wires: Sequence[bytes | None]
    ) -> list[asyncio.Future[None]]:
        """As :meth:`arroyo.runtime.publisher.Publisher.send_many`."""

    async def publish(self, message: Message) -> None:
        """As :meth:`arroyo.runtime.publisher.Publisher.publish`."""


class NotSent(PublishError):
    """Not written: an earlier send to the same publisher failed (see :mod:`ordering`).

    The runtime re-publishes such a message once the failed one was, without counting
    or logging a retry."""


def failed(sent: asyncio.Future[None]) -> bool:
    """True when ``sent`` (done) failed with an error that will be retried: not a
    PermanentError (that message is dead-lettered, nothing waits for it), not cancelled."""
    if sent.cancelled():
        return False
    error = sent.exception()
    return error is not None and not isinstance(error, PermanentError)


class OrderedSends:
    """The sends of one Block to one publisher, kept in order when one fails.

    While no send has failed, :meth:`send` gives each message to the publisher at once
    (a few attribute checks: nothing else on the hot path). Once one has failed, it
    returns a placeholder that completes when the held message was sent and confirmed;
    the settler calls :meth:`release` when it reaches the first held one, i.e. once
    every send given before the hold is settled.
    """

    __slots__ = ("_held", "_tail", "_takes_wire", "publisher")

    def __init__(self, publisher: Sender) -> None:
        self.publisher = publisher
        self._takes_wire = "wire" in inspect.signature(publisher.send).parameters
        """False for a publisher whose send() predates ``wire``: it gets the message alone."""
        self._tail: asyncio.Future[None] | None = None
        self._held: deque[tuple[Message, bytes | None, asyncio.Future[None]]] | None = None

    @property
    def holding(self) -> bool:
        """True while later sends are held back behind a failed one."""
        return self._held is not None

    def send(self, message: Message, wire: bytes | None = None) -> asyncio.Future[None]:
        """Send ``message`` now (``wire``: as for :meth:`Publisher.send`), or hold it back
        when a send before it has failed; what is returned completes once the publisher
        confirmed it (or fails as it failed)."""
        if not self._takes_wire:
            wire = None
        held = self._held
        if held is None:
            tail = self._tail
            if tail is None or not tail.done() or not failed(tail):
                self._tail = sent = start_send(self.publisher, message, wire)
                return sent
            self._held = held = deque()
        waiting: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        held.append((message, wire, waiting))
        return waiting

    def send_many(
        self, messages: Sequence[Message], wires: Sequence[bytes | None]
    ) -> list[asyncio.Future[None]]:
        """:meth:`send` each of ``messages`` (with the ``wire`` at the same place), in
        order; while nothing is held back, in one call of the publisher's
        :meth:`~arroyo.runtime.publisher.Publisher.send_many`. What follows a send that
        failed at once is held back, as :meth:`send` would."""
        if not self._takes_wire:
            wires = [None] * len(messages)
        sent: list[asyncio.Future[None]] = []
        tail = self._tail
        if self._held is None and (tail is None or not tail.done() or not failed(tail)):
            sent = self.publisher.send_many(messages, wires)
            if sent:
                self._tail = sent[-1]
            if len(sent) == len(messages):
                return sent
        # The publisher stopped after a send that failed at once: the rest is held back.
        for index in range(len(sent), len(messages)):
            sent.append(self.send(messages[index], wires[index]))
        return sent

    def hold(self) -> None:
        """Hold back later sends (the settler saw a send fail)."""
        if self._held is None:
            self._held = deque()

    def is_first_held(self, sent: asyncio.Future[None]) -> bool:
        """True when ``sent`` is the first placeholder held back."""
        return bool(self._held) and self._held[0][2] is sent  # type: ignore[index]

    def release(self) -> None:
        """Send what was held back, in order, and send directly again from now on. Called
        by the settler once every send given before the hold is confirmed or given up."""
        held, self._held = self._held, None
        while held:
            message, wire, waiting = held.popleft()
            if waiting.done():  # cancelled: the Block is ending
                continue
            self._tail = sent = start_send(self.publisher, message, wire)
            sent.add_done_callback(functools.partial(_copy, target=waiting))

    def abandon(self) -> None:
        """Cancel what is held back (the Block ends without sending it)."""
        held, self._held = self._held, None
        for _, _, waiting in held or ():
            waiting.cancel()


def _copy(source: asyncio.Future[None], *, target: asyncio.Future[None]) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif (error := source.exception()) is not None:
        target.set_exception(error)
    else:
        target.set_result(None)


def start_send(publisher: Sender, message: Message, wire: bytes | None) -> asyncio.Future[None]:
    """``publisher.send(message, wire)`` as a future; a synchronous failure becomes a
    failed one (``wire`` None: ``send(message)``, for a publisher whose send() predates
    ``wire``)."""
    try:
        sent = publisher.send(message) if wire is None else publisher.send(message, wire)
    except Exception as exc:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_exception(exc)
        return future
    if isinstance(sent, asyncio.Future):
        return sent
    return asyncio.ensure_future(sent)


class FailStop:
    """What a pipelined publisher keeps to honour rule 2 of :mod:`arroyo.runtime.ordering`.

    Call :meth:`given` when a send is given (False: fail it at once with
    :meth:`not_sent`; it does not count as outstanding), :meth:`writable` right before
    writing a send that waited (False: fail it with :meth:`not_sent` instead of
    writing), and :meth:`completed` once the outcome of a send that was given (True) is
    known, exactly once.
    """

    __slots__ = ("_broken", "_outstanding", "where")

    def __init__(self, where: str) -> None:
        self.where = where
        self._outstanding = 0
        self._broken = False

    def given(self) -> bool:
        """A send is given: False when it must not be written (an earlier send failed and
        some send given before it is still outstanding)."""
        if self._broken:
            if self._outstanding:
                return False
            self._broken = False  # every earlier send completed: its caller knows
        self._outstanding += 1
        return True

    def writable(self) -> bool:
        """False from a failure until the sends outstanding then have completed."""
        return not self._broken

    def completed(self, error: BaseException | None) -> None:
        """A send that was given completed: confirmed (None) or failed with ``error``."""
        self._outstanding -= 1
        if error is not None and not isinstance(error, PermanentError | NotSent):
            self._broken = True

    def not_sent(self) -> NotSent:
        """The error for a send that is not written."""
        return not_sent(self.where)


def not_sent(where: str) -> NotSent:
    """The error for a send to ``where`` that is not written (rule 2)."""
    return NotSent(f"{where}: not sent: an earlier message failed (it is sent again)")
