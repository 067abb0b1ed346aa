"""Settling: the outputs of each received message are sent as soon as they are known, and
the message is acknowledged once they are confirmed, in input order.

The Block hands over each received message with its result (:meth:`Settler.publish`):
its outputs go to each publisher at once, without waiting for earlier confirmations
(:class:`~arroyo.runtime.ordering.OrderedSends` keeps their order when one fails), or
its dead letter is sent. :meth:`Settler.run` waits for those confirmations in input
order, re-publishes what failed (:mod:`arroyo.runtime.republish`; what still fails
is dead-lettered) and hands settled messages in batches to the
:class:`~arroyo.runtime.acks.Acknowledger`, which acknowledges them in order while
settling goes on. A listener that must know what is acknowledged at some point (a Kafka
transaction takes the offsets of what its outputs complete) awaits
:meth:`Settler.acknowledged` (through its intake).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence

from arroyo.errors import PublishError
from arroyo.message import Message
from arroyo.runtime import tracing
from arroyo.runtime.acks import ACK_BATCH, Acknowledger
from arroyo.runtime.calls import describe
from arroyo.runtime.deadletters import DeadLetters
from arroyo.runtime.intake import BoundedIntake
from arroyo.runtime.listener import Listener, Received
from arroyo.runtime.logs import Throttle
from arroyo.runtime.metrics import BlockMetrics, BlockStats
from arroyo.runtime.ordering import OrderedSends
from arroyo.runtime.process import Forward, Outcome
from arroyo.runtime.publisher import DeadLetter, Publisher
from arroyo.runtime.readiness import Readiness
from arroyo.runtime.republish import Republisher
from arroyo.runtime.retry import RetryPolicy
from arroyo.runtime.tasks import cancelling, retrieve

log = logging.getLogger("arroyo.block")

_Sends = list[tuple[OrderedSends, Message, "asyncio.Future[None]"]]
"""The outputs of one received message: each publisher's sends, with what completes once
it is confirmed."""


class PublishAbandoned(PublishError):
    """A publisher cancelled a send (an aborted Kafka transaction): the Block stops and
    what it had not acknowledged is redelivered."""


class _Dead:
    """A received message that goes to the dead letter, with its send (None: dropped)."""

    __slots__ = ("letter", "sent")

    def __init__(self, letter: DeadLetter, sent: asyncio.Future[None] | None) -> None:
        self.letter = letter
        self.sent = sent


class Settler:
    """Publishes the results of one Block and acknowledges its received messages."""

    def __init__(
        self,
        name: str,
        listener: Listener,
        publishers: Callable[[], list[Publisher]],
        intake: BoundedIntake,
        dead: DeadLetters,
        publish_retry: RetryPolicy,
        stats: BlockStats,
        metrics: BlockMetrics,
        throttle: Throttle,
        readiness: Readiness | None = None,
    ) -> None:
        self.name = name
        self.publishers = publishers
        self.dead = dead
        self.stats = stats
        self.metrics = metrics
        self.throttle = throttle
        self._again = Republisher(
            name,
            publish_retry,
            stats,
            throttle,
            readiness if readiness is not None else Readiness(),
        )
        self._pending: deque[tuple[Received, _Sends | _Dead]] = deque()
        self._more = asyncio.Event()
        self._all_given = False
        self._gates: dict[Publisher, OrderedSends] = {}
        self._settling = False
        self._taken = 0
        """Received messages taken off ``_pending`` (settled) since the start."""
        self._acked = 0
        """... and acknowledged (their :meth:`Listener.ack_many` returned)."""
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        """Who waits in :meth:`acknowledged`, with the count of acknowledgements awaited."""
        self._acks = Acknowledger(listener, intake, stats, throttle, self._acknowledged)

    def publish(self, received: Received, result: Outcome) -> None:
        """Send the outputs of ``received`` now, in order, without waiting for their
        confirmations (or its dead letter); :meth:`run` waits for them."""
        self.publish_many((received,), (result,))

    def publish_many(self, batch: Sequence[Received], results: Sequence[Outcome]) -> None:
        """:meth:`publish` each received message of ``batch`` with its result, in order
        (the publishers are looked up once for the batch)."""
        gates = [self._gates.get(p) or self._gate(p) for p in self.publishers()]
        pending = self._pending
        settle: _Sends | _Dead
        if tracing.on:  # a span per send
            for received, result in zip(batch, results, strict=True):
                if isinstance(result, DeadLetter):
                    settle = _Dead(result, self.dead.send(result))
                else:
                    settle = self._traced(received, result, gates)
                pending.append((received, settle))
            self._more.set()
            return
        # Every output of the batch, in order, goes to each publisher in one call.
        messages: list[Message] = []
        wires: list[bytes | None] = []
        spans: list[int] = []  # how many outputs each received message has
        for result in results:
            if isinstance(result, DeadLetter):
                spans.append(0)
            elif isinstance(result, Forward):
                messages.append(result.message)
                wires.append(result.wire)
                spans.append(1)
            else:
                messages += result
                wires += [None] * len(result)
                spans.append(len(result))
        sent = [gate.send_many(messages, wires) for gate in gates] if messages else []
        at = 0
        alone = sent[0] if len(sent) == 1 else None  # one publisher: no inner loop
        for received, result, count in zip(batch, results, spans, strict=True):
            if isinstance(result, DeadLetter):
                settle = _Dead(result, self.dead.send(result))
            elif count == 1 and alone is not None:
                settle = [(gates[0], messages[at], alone[at])]
                at += 1
            else:
                settle = [
                    (gate, messages[index], sends[index])
                    for index in range(at, at + count)
                    for gate, sends in zip(gates, sent, strict=True)
                ]
                at += count
            pending.append((received, settle))
        self._more.set()

    def _traced(
        self, received: Received, result: list[Message] | Forward, gates: list[OrderedSends]
    ) -> _Sends:
        """The sends of :meth:`publish` with tracing on: each in its ``publish`` span,
        whose trace context the message carries to the broker."""
        messages, wire = (
            ([result.message], result.wire) if isinstance(result, Forward) else (result, None)
        )
        settle: _Sends = []
        for message in messages:
            for gate in gates:
                traced, span = tracing.publishing(message, received, self.name, gate.publisher)
                done = gate.send(traced, wire)
                tracing.published(span, done)
                settle.append((gate, traced, done))
        return settle

    def _gate(self, publisher: Publisher) -> OrderedSends:
        gate = self._gates[publisher] = OrderedSends(publisher)
        return gate

    def finish(self) -> None:
        """Nothing more will be published: :meth:`run` returns once all is settled."""
        self._all_given = True
        self._more.set()

    async def run(self) -> None:
        """Settle each received message in input order: wait for its outputs'
        confirmations (or its dead letter's), then acknowledge it.

        Settled messages are handed to the acknowledgement task together, as soon as the
        next one is not confirmed yet, or failed (or at
        :data:`~arroyo.runtime.acks.ACK_BATCH`), so one broker round trip acknowledges
        many and no acknowledgement waits for later work; settling goes on while they
        are acknowledged. Returns when everything published
        is settled and acknowledged (after :meth:`finish`). When settling fails (a dead
        letter not taken), what was settled before is acknowledged, then the failure is
        raised.
        """
        pending, ready = self._pending, list[Received]()
        self._settling = True
        try:
            while True:
                if pending and self._take_settled(ready):
                    continue
                if pending:
                    received, result = pending[0]
                    settled = len(ready) < ACK_BATCH and (
                        _succeeded(result) if isinstance(result, _Dead) else self._settled(result)
                    )
                    if ready and not settled:
                        self._acks.hand(ready)  # before waiting for anything
                        ready = []
                        continue
                    if isinstance(result, _Dead):
                        await self.dead.confirm(result.letter, result.sent)
                    elif not settled:
                        await self._confirm(received, result)
                    pending.popleft()
                    ready.append(received)
                    self._taken += 1
                elif ready:
                    self._acks.hand(ready)
                    ready = []
                elif self._all_given:
                    await self._acks.drain()
                    return
                else:
                    self._more.clear()
                    await self._more.wait()
        except Exception as exc:
            # Settled means confirmed: acknowledge it, unless the publisher abandoned
            # the work (an aborted Kafka transaction discarded those outputs too).
            if ready and not isinstance(exc, PublishAbandoned):
                self._acks.hand(ready)
            await self._acks.drain()
            raise
        finally:
            self._settling = False
            self._acks.cancel()  # cancelled: what is not acknowledged is redelivered
            self._wake(everyone=True)

    async def acknowledged(self) -> None:
        """Return once every received message published so far whose outputs (or dead
        letter) are all confirmed now has been acknowledged: those at the head of the
        input order, up to the first one that is not confirmed yet or failed.

        :meth:`run` acknowledges those without waiting for anything else (it
        acknowledges what it holds before it works on a message that is not confirmed,
        or failed), so this never waits for a send, a retry or a dead letter that is not
        confirmed, whatever holds it back. Returns at once while :meth:`run` is not
        running; when it ends, every waiter returns.
        """
        if not self._settling:
            return
        target = self._taken
        for _, result in self._pending:
            if not _succeeded(result):
                break
            target += 1
        if self._acked >= target:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((target, waiter))
        await waiter

    def _wake(self, everyone: bool = False) -> None:
        """Wake who waits in :meth:`acknowledged` for what is acknowledged by now."""
        waiting = []
        for target, waiter in self._waiters:
            if everyone or target <= self._acked:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                waiting.append((target, waiter))
        self._waiters = waiting

    def leave(self) -> None:
        """The Block ends with work unsettled: drop what is held back, and mark the
        outcome of every send nobody waits for any more as seen (no warning storm)."""
        self._wake(everyone=True)
        for gate in self._gates.values():
            gate.abandon()
        for _, result in self._pending:
            sends = [result.sent] if isinstance(result, _Dead) else [s for _, _, s in result]
            for sent in sends:
                if sent is not None:
                    sent.add_done_callback(retrieve)
        self._pending.clear()

    def _take_settled(self, ready: list[Received]) -> int:
        """Settle the received messages at the head of the input order whose outputs are
        all confirmed already, while no publisher holds sends back (the common case),
        into ``ready`` (up to ACK_BATCH in it), in one pass; return how many."""
        if any(gate.holding for gate in self._gates.values()):
            return 0
        pending, room, taken = self._pending, ACK_BATCH - len(ready), 0
        settled: list[_Sends] = []
        while taken < room and pending:
            received, sends = pending[0]
            if type(sends) is not list:  # a dead letter: settled one by one
                break
            for _, _, sent in sends:
                if not sent.done() or sent.cancelled() or sent.exception() is not None:
                    break
            else:
                pending.popleft()
                ready.append(received)
                taken += 1
                settled.append(sends)
                continue
            break
        if taken:
            confirmed = [message for sends in settled for _, message, _ in sends]
            self._taken += taken
            self.stats.published += len(confirmed)
            now = time.time()
            self.metrics.latency.observe_all(
                [max(0.0, now - message.timestamp / 1e9) for message in confirmed]
            )
        return taken

    def _settled(self, sends: _Sends) -> bool:
        """Settle ``sends`` now when every one is confirmed and no publisher holds sends
        back (the common case: nothing to wait for, retry or release) and return True;
        else False, with nothing done (:meth:`_confirm` settles them)."""
        for gate, _, sent in sends:
            if gate.holding or not _ok(sent):
                return False
        now = time.time()
        for _, message, _ in sends:
            self._published(message, now)
        return True

    def _published(self, message: Message, now: float) -> None:
        """Count one confirmed output, with its end-to-end latency."""
        self.stats.published += 1
        self.metrics.latency.observe(max(0.0, now - message.timestamp / 1e9))

    async def _confirm(self, received: Received, sends: _Sends) -> None:
        """Wait for every publisher's confirmation (retrying failures, in order: later
        sends to that publisher are held back meanwhile); when one still fails, send the
        dead letter instead.

        A cancelled confirmation (the publisher abandoned the work, as an aborted Kafka
        transaction does) raises PublishAbandoned: nothing from there on is acknowledged,
        and is redelivered.
        """
        failure: DeadLetter | None = None
        for gate, message, sent in sends:
            if gate.holding and gate.is_first_held(sent):
                gate.release()  # everything sent before the hold is settled
            try:
                await sent
            except asyncio.CancelledError:
                if cancelling():
                    raise
                raise PublishAbandoned(
                    f"{gate.publisher.name} abandoned {describe(message)}: stopping"
                ) from None
            except Exception as first:
                if failure is not None:
                    continue
                failure = await self._again.publish(received, gate, message, first)
                if failure is not None:
                    continue
            self._published(message, time.time())
        if failure is not None:
            await self.dead.confirm(failure, self.dead.send(failure))

    def _acknowledged(self, count: int) -> None:
        """``count`` more were acknowledged (or failed to be): wake who waits for them."""
        self._acked += count
        if self._waiters:
            self._wake()


def _succeeded(result: _Sends | _Dead) -> bool:
    """True when every output (or the dead letter) was already confirmed (a dropped
    dead letter too): settling it waits for nothing."""
    if isinstance(result, _Dead):
        return result.sent is None or _ok(result.sent)
    return all(_ok(sent) for _, _, sent in result)


def _ok(sent: asyncio.Future[None]) -> bool:
    return sent.done() and not sent.cancelled() and sent.exception() is None
