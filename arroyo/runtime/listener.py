"""Listener: a source connector. It receives from the outside world and feeds a Block."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from arroyo.runtime.parser import AvroParser, Parser
from arroyo.runtime.received import Raw, Received

if TYPE_CHECKING:
    from arroyo.runtime.journal import DeliveryJournal
    from arroyo.runtime.lag import Source

__all__ = ["Intake", "Listener", "Raw", "Received", "hand_over"]


class Intake(Protocol):
    """Where a listener hands what it received (the Block's bounded queue)."""

    async def put(self, received: Received) -> None:
        """Queue ``received``; wait while the Block is full (this is the backpressure)."""

    def offer(self, received: Received) -> bool:
        """Queue ``received`` if there is room now; False (and nothing queued) when full."""

    def offer_many(self, items: Sequence[Received]) -> int:
        """Queue the first of ``items``, in order, as many as there is room for now;
        return how many (the rest is not queued). One call for a batch a listener
        received together (a Kafka ``consume``): the same as :meth:`offer` for each
        until one is refused."""

    def full(self) -> bool:
        """True when a put() would wait."""

    def hand_back(self, which: Callable[[Received], bool]) -> list[Received]:
        """Take back, in order, the messages handed over that still wait to be processed
        and for which ``which`` is true; return them. They will not be processed,
        published nor acknowledged: their source gives them again (a Kafka partition
        was revoked, and its new owner reads them from the last commit). A message being
        processed already is not taken back."""

    async def acknowledged(self) -> None:
        """Return once every message handed over so far whose outputs are all confirmed
        by now (or whose dead letter is) has been acknowledged (:meth:`Listener.ack_many`
        returned). Nothing else is waited for: not a message still processed, not one
        whose outputs or dead letter are not confirmed yet, nor what comes after it in
        input order, so a listener may call this while it holds sends back (a Kafka
        transaction being committed). Returns at once when the Block is not settling."""


async def hand_over(
    intake: Intake, items: Sequence[Received], stopping: Callable[[], bool] = lambda: False
) -> int:
    """Hand ``items`` (a batch received together) to ``intake`` in order: as many as
    there is room for now in one :meth:`Intake.offer_many`; when the Block is full, the
    next one waits for room (``put``: the backpressure), then as many again as there is
    room for, and so on. It asks ``stopping()`` first and before each wait and, when
    True, hands no more over. Returns how many were handed over: the first that many
    of ``items``; the listener keeps the rest (for redelivery)."""
    taken, count = 0, len(items)
    while taken < count and not stopping():
        taken += intake.offer_many(items[taken:] if taken else items)
        if taken == count or stopping():
            break
        await intake.put(items[taken])
        taken += 1
    return taken


class Listener(ABC):
    """Receives messages from a source and hands them to a Block, which acknowledges them.

    The Block calls, in order: :meth:`connect`, :meth:`start` (as a task),
    :meth:`ack_many` with batches of messages once they have been fully handled (in
    input order, concurrently with start), :meth:`stop` when it wants no more input, and
    finally :meth:`close`.
    ``operator`` is the operator this listener feeds (set by the Block). ``journal``,
    when set, is the :class:`~arroyo.runtime.journal.DeliveryJournal` in which the Block
    records the messages it is processing; it then sets ``deliveries`` from the journal
    (how many workers died while processing the message, plus one).
    """

    def __init__(self, parser: Parser | None = None) -> None:
        self.parser: Parser = parser or AvroParser()
        self.journal: DeliveryJournal | None = None

    @property
    def name(self) -> str:
        """Where this listener reads from, for logs (never with a password)."""
        return type(self).__name__

    @property
    def connected(self) -> bool:
        """Whether this listener can receive now, as far as it knows: connected to its
        source and, for a consumer group, a member of it with its share settled (Kafka:
        the assignment after a rebalance has come, even an empty one). Read by the
        Block's readiness (``/readyz``), on the event loop, only after :meth:`connect`
        returned; must not block.

        The default is True: a listener that does not watch its connection counts as
        connected once connect() returned. A connector that notices a lost connection
        (a read failed and is retried, the client reports the broker down) returns False
        from then until it has a working connection again.
        """
        return True

    async def lag(self) -> dict[Source, int] | None:
        """How many messages of the source wait to be consumed by this listener's group
        now, per part of the source (:func:`arroyo.runtime.lag.source` makes the key:
        Kafka ``topic``/``partition`` of each partition assigned to this listener, Redis
        Streams ``stream``/``group``, RabbitMQ ``queue``); None when it cannot tell.

        Exported as ``arroyo_lag_messages`` (:mod:`arroyo.runtime.lag`). Called on the
        event loop every few seconds while the Block runs, after :meth:`connect`, never
        twice at once; must not block the loop (a blocking client call runs in a thread)
        nor slow the hand-over of messages (no call in the consumer's own thread that
        waits for the broker, no lock the hand-over takes). May raise: the lag then
        counts as unknown until the next call. The default is None (unknown).
        """
        return None

    async def connect(self) -> None:
        """Connect to the source and check that it answers, giving up after the
        connector's ``connect_timeout``: raise :class:`~arroyo.errors.ConnectError` (one
        line saying why) when it cannot. The Block calls it before it starts anything,
        so a wrong address fails before ``started:``; :meth:`start` connects by itself
        when this was not called. The default does nothing (sources without a broker)."""

    @abstractmethod
    async def start(self, intake: Intake) -> None:
        """Receive until the source ends or :meth:`stop` is called, handing each message to
        ``await intake.put(received)`` in the order the source gave them (what came
        together, as a batch: :func:`hand_over`, ``intake.offer_many``).

        Returns when no more messages will be handed over. Raises only for errors the
        listener cannot recover from (connection losses it should retry by itself).
        """

    @abstractmethod
    async def stop(self) -> None:
        """Stop taking input: :meth:`start` returns soon after. Must not wait for acks."""

    @abstractmethod
    async def ack(self, received: Received) -> None:
        """Acknowledge ``received``: every output was confirmed or it was dead-lettered.

        May be called in any order. A listener whose source needs ordered acks (Kafka
        offsets) commits only below its lowest unacknowledged message
        (:class:`~arroyo.runtime.offsets.OffsetTracker`).
        """

    async def ack_many(self, received: Sequence[Received]) -> list[BaseException | None]:
        """Acknowledge each of ``received`` (the Block gives them in input order).

        Returns one result per message: None, or the exception acknowledging it raised
        (it will be redelivered). The default calls :meth:`ack` for each in turn; a
        listener whose ack waits for the broker overrides this to wait once for all.
        """
        results: list[BaseException | None] = []
        for one in received:
            try:
                await self.ack(one)
            except Exception as exc:
                results.append(exc)
            else:
                results.append(None)
        return results

    async def close(self) -> None:
        """Commit what was acknowledged and disconnect. Unacknowledged messages are left
        for redelivery. Called once at the end, after start() returned, and also when
        start() was never called (a publisher failed to start)."""

    async def __aenter__(self) -> Listener:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
