"""Block: one listener, one operator, its publishers, and the delivery contract between them.

listener -> bounded intake -> operator (``concurrency`` calls at once) -> publishers.
Outputs are published in input order. A source message is acknowledged only after the
operator returned and every publisher confirmed every output (or after it went to the
dead-letter destination); acknowledgements follow input order, in batches. Failures
are retried with backoff; what still fails goes to the dead letter with the reason, its
source coordinates and the original bytes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Coroutine, Iterable, Sequence
from typing import Any, Literal, TypeVar

from arroyo.errors import ArroyoError, DecodeError, PermanentError, PublishError, RegistryError
from arroyo.message import Message
from arroyo.runtime import metrics
from arroyo.runtime.calls import OperatorCalls, describe
from arroyo.runtime.deadletters import DeadLetters
from arroyo.runtime.intake import BoundedIntake
from arroyo.runtime.listener import Listener, Received
from arroyo.runtime.logs import Throttle, current_block
from arroyo.runtime.operator import Operator, Passthrough
from arroyo.runtime.ordering import NotSent, OrderedSends
from arroyo.runtime.publisher import DeadLetter, Publisher
from arroyo.runtime.retry import RetryPolicy
from arroyo.runtime.signals import catch_early_signals, run_blocks

__all__ = ["Block", "InvalidOutput", "catch_early_signals", "run_blocks"]

log = logging.getLogger("arroyo.block")
T = TypeVar("T")

_Sends = list[tuple[OrderedSends, Message, "asyncio.Future[None]"]]
"""The outputs of one received message: each publisher's sends, with what completes once
it is confirmed."""

_ACK_BATCH = 512
"""At most this many acknowledgements are handed to the listener at once."""

CLOSE_TIMEOUT = 10.0
"""After the stop, how long closing may take in all (commit, disconnect): with the grace
period, the bound on a stop."""

ABORT_CLOSE_TIMEOUT = 1.0
"""The same after :meth:`Block.abort` (a second signal)."""

_FIRST = asyncio.FIRST_COMPLETED

_CANCEL_TIMEOUT = 2.0
"""How long the Block's tasks get to end once cancelled (they are left behind after)."""


class _Dead:
    """A received message that goes to the dead letter, with its send (None: dropped)."""

    __slots__ = ("letter", "sent")

    def __init__(self, letter: DeadLetter, sent: asyncio.Future[None] | None) -> None:
        self.letter = letter
        self.sent = sent


class PublishAbandoned(PublishError):
    """A publisher cancelled a send (an aborted Kafka transaction): the Block stops and
    what it had not acknowledged is redelivered."""


class InvalidOutput(PermanentError, TypeError):
    """The operator returned something other than a message, a list of them, or None."""


def _outputs(value: Any) -> list[Message]:
    from arroyo.message import Event, Start, Stop

    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, Start | Event | Stop):
            raise InvalidOutput(
                f"operator returned {type(item).__name__}; expected a Start, Event or Stop, "
                "a list of them, or None"
            )
    return items


class Block:
    """Runs ``listener -> operator -> publishers`` with at-least-once delivery.

    - ``queue_size`` / ``max_bytes``: at most this many messages (and bytes) are held
      between the listener and their acknowledgement; a full Block pauses the listener.
    - ``concurrency``: how many ``operator.process`` calls run at once.
    - ``retry``: for operator failures; ``publish_retry``: for publisher and dead-letter
      failures (default: until the destination is back). Then the dead letter.
    - ``dead_letter``: where bad messages go. Without one, they are logged and dropped
      (counted). A dead letter the destination does not take stops the Block.
    - ``max_deliveries``: a message the broker has delivered this many times (it keeps
      crashing workers) goes to the dead letter instead of being processed again.
    - ``grace_period``: after :meth:`stop`, how long in-flight work may take to finish;
      what is not finished then is left unacknowledged, for redelivery (calls still
      running are abandoned). Closing then takes at most :data:`CLOSE_TIMEOUT` more.
    - ``operator_timeout``: a call of the operator that takes longer fails (retried, then
      dead-lettered). ``hung_after``: a call running this long is logged as hung.
    - ``max_messages``: stop after this many source messages (``--count``).
    - ``on_invalid``: what to do with a message that breaks a schema (cannot be decoded,
      or an output cannot be encoded): ``dead-letter`` it (default) or ``drop`` it
      (logged and counted in ``arroyo_dropped_total``).

    Outputs reach each publisher in input order, also when a publish fails and is
    retried (:mod:`arroyo.runtime.ordering`). Any task of the Block that fails makes the
    Block fail: :meth:`run` raises it.
    """

    def __init__(
        self,
        listener: Listener,
        operator: Operator | None = None,
        publishers: Iterable[Publisher] = (),
        *,
        name: str = "block",
        dead_letter: Publisher | None = None,
        queue_size: int = 1000,
        max_bytes: int = 64 << 20,
        concurrency: int = 1,
        retry: RetryPolicy | None = None,
        publish_retry: RetryPolicy | None = None,
        max_deliveries: int | None = 5,
        grace_period: float = 30.0,
        operator_timeout: float | None = None,
        hung_after: float = 60.0,
        max_messages: int | None = None,
        on_invalid: Literal["dead-letter", "drop"] = "dead-letter",
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if operator_timeout is not None and operator_timeout <= 0:
            raise ValueError(f"operator_timeout must be positive, got {operator_timeout}")
        self.name = name
        self.listener = listener
        self.operator = operator if operator is not None else Passthrough()
        for publisher in publishers:
            self.operator.add_publisher(publisher)
        self.dead_letter = dead_letter
        self.concurrency = concurrency
        self.retry = retry if retry is not None else RetryPolicy()
        self.publish_retry = publish_retry if publish_retry is not None else RetryPolicy(None)
        self.max_deliveries = max_deliveries
        self.grace_period = grace_period
        self.operator_timeout = operator_timeout
        self.hung_after = hung_after
        self.max_messages = max_messages
        self.on_invalid = on_invalid
        self.intake = BoundedIntake(queue_size, max_bytes)
        self.stats = metrics.BlockStats()
        self.metrics = metrics.BlockMetrics()
        metrics.register(self)
        self.abandoned = 0
        """Messages left unacknowledged when the grace period ended (0 after a clean stop)."""
        self._stop_requested = asyncio.Event()
        self._throttle = Throttle()
        self._slots: asyncio.Semaphore | None = None
        self._calls = OperatorCalls(self.operator, operator_timeout, hung_after)
        self._dead = DeadLetters(
            dead_letter, on_invalid, self.publish_retry, self.stats, self._throttle
        )
        self._gates: dict[Publisher, OrderedSends] = {}
        self._settling: deque[tuple[Received, _Sends | _Dead]] = deque()
        self._settle_more = asyncio.Event()
        self._all_emitted = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failure: BaseException | None = None
        self._failed = asyncio.Event()
        self._aborting = False
        self._running: asyncio.Task[Any] | None = None

    # -- running -------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the Block to stop: take no more input, finish in-flight work, acknowledge,
        close. Safe to call from a signal handler (on the loop thread), and more than once."""
        self._stop_requested.set()

    def abort(self) -> None:
        """Stop now: cancel in-flight work (left unacknowledged) and close within
        :data:`ABORT_CLOSE_TIMEOUT`; :meth:`run` then raises CancelledError."""
        self._aborting = True
        if self._running is not None:
            self._running.cancel()

    async def run(self) -> metrics.BlockStats:
        """Run until the source ends or :meth:`stop` is called; return what was done.

        Raises what the listener raised (after finishing in-flight work), what starting
        a publisher raised (before taking any input), or what made a task of the Block
        fail (a dead-letter destination that refuses, a bug): then it stops at once.
        """
        token = current_block.set(self.name)
        self._running = asyncio.current_task()
        self._slots = asyncio.Semaphore(self.concurrency) if self.concurrency > 1 else None
        self.listener.operator = self.operator
        self._calls.operator = self.operator
        started: list[Publisher | Operator] = []
        try:
            for part in [*self.operator.publishers, *filter(None, [self.dead_letter])]:
                await part.start()
                started.append(part)
            await self.operator.start()
            started.append(self.operator)
            log.info(
                "started: %s -> %s -> %s",
                self.listener.name,
                type(self.operator).__name__,
                ", ".join(p.name for p in self.operator.publishers) or "(no publishers)",
            )
            await self._run()
        finally:
            try:
                await self._close(started)
            finally:
                self._throttle.flush()
                stats = self.stats
                log.info(
                    "stopped: %d received, %d published, %d acknowledged, %d dead-lettered, "
                    "%d dropped, %d retried%s",
                    stats.received,
                    stats.published,
                    stats.acknowledged,
                    stats.dead_lettered,
                    stats.dropped,
                    stats.retried,
                    f", {self.abandoned} left unacknowledged" if self.abandoned else "",
                )
                current_block.reset(token)
        return self.stats

    async def _run(self) -> None:
        listen = asyncio.create_task(self._listen(), name=f"{self.name}-listen")
        work = self._task(self._work())
        self._task(self._calls.watch())
        stop = asyncio.create_task(self._stop_requested.wait())
        failed = asyncio.create_task(self._failed.wait())
        try:
            await asyncio.wait({listen, stop, failed}, return_when=_FIRST)
            deadline: float | None = None
            if not listen.done() and self._failure is None:
                log.info("stopping: no more input; finishing in-flight work")
                deadline = time.monotonic() + self.grace_period
                await _bounded(self.listener.stop(), self.grace_period, "stopping the listener")
                await asyncio.wait({listen, failed}, timeout=_left(deadline), return_when=_FIRST)
            elif listen.done() and not listen.cancelled() and listen.exception() is not None:
                deadline = time.monotonic() + self.grace_period  # no waiting for ever
            self.intake.close()
            if self._failure is None:
                await asyncio.wait({work, failed}, timeout=_left(deadline), return_when=_FIRST)
            if self._failure is not None:
                log.error("stopping at once: %s", self._failure)
                await _bounded(self.listener.stop(), _CANCEL_TIMEOUT, "stopping the listener")
                raise self._failure
            if not work.done():
                self.abandoned = self.intake.held
                log.warning(
                    "grace period of %.1f s is over: %d messages left unacknowledged "
                    "(they will be redelivered)",
                    self.grace_period,
                    self.abandoned,
                )
                self._calls.report_abandoned()
            if listen.done() and not listen.cancelled() and listen.exception() is not None:
                raise listen.exception()  # type: ignore[misc]
        finally:
            self.intake.close()
            tasks = {stop, failed, listen, *self._tasks}
            for task in tasks:
                task.cancel()
            timeout = ABORT_CLOSE_TIMEOUT if self._aborting else _CANCEL_TIMEOUT
            done, left = await asyncio.wait(tasks, timeout=timeout)
            for task in done:
                _retrieve(task)
            if left:
                log.warning(
                    "%d task(s) did not end within %.0f s of being cancelled: left behind",
                    len(left),
                    timeout,
                )
            self._leave_unsettled()

    async def _listen(self) -> None:
        try:
            await self.listener.start(_CountingIntake(self))
        except Exception:
            log.exception("listener %s failed", self.listener.name)
            raise
        finally:
            self.intake.close()

    async def _close(self, started: Sequence[Publisher | Operator]) -> None:
        """Close the listener, then the operator and the publishers, within a budget in
        all (what does not close in time is left as it is: the process may exit)."""
        budget = ABORT_CLOSE_TIMEOUT if self._aborting else CLOSE_TIMEOUT
        deadline = time.monotonic() + budget
        parts: list[tuple[str, Any]] = [(self.listener.name, self.listener)]
        parts += [(getattr(p, "name", type(p).__name__), p) for p in reversed(started)]
        for name, part in parts:
            try:
                await _bounded(part.close(), _left(deadline) or 0.0, f"closing {name}")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("closing %s failed", name)

    def _leave_unsettled(self) -> None:
        """The Block ends with work unsettled: drop what is held back, and mark the
        outcome of every send nobody waits for any more as seen (no warning storm)."""
        for gate in self._gates.values():
            gate.abandon()
        for _, result in self._settling:
            sends = [result.sent] if isinstance(result, _Dead) else [s for _, _, s in result]
            for sent in sends:
                if sent is not None:
                    sent.add_done_callback(_retrieve)
        self._settling.clear()

    # -- the pipeline --------------------------------------------------------------

    async def _work(self) -> None:
        """Process each message in arrival order; publish the results in that order.

        With concurrency 1 the messages are processed one after the other, here; above,
        each is processed in a task of its own and an emitter keeps the order. A settler
        waits for the confirmations and acknowledges.
        """
        settler = self._task(self._settle())
        if self.concurrency == 1:
            while (received := await self.intake.get()) is not None:
                self._publish(received, await self._process(received))
        else:
            order: asyncio.Queue[
                tuple[Received, asyncio.Task[list[Message] | DeadLetter]] | None
            ] = asyncio.Queue()
            emitter = self._task(self._emit(order))
            try:
                while (received := await self.intake.get()) is not None:
                    order.put_nowait((received, self._task(self._process(received))))
            finally:
                order.put_nowait(None)
            await emitter
        self._all_emitted = True
        self._settle_more.set()
        await settler

    def _task(self, coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """A task of this Block, cancelled when the Block ends; when it fails, the Block
        fails (stops at once and raises it)."""
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        failed = not task.cancelled() and task.exception() is not None
        if failed and self._failure is None:
            self._failure = task.exception()
            self._failed.set()

    async def _process(self, received: Received) -> list[Message] | DeadLetter:
        """Parse and run the operator on one received message (never raises)."""
        attempts = 1
        try:
            if self.max_deliveries is not None and received.deliveries > self.max_deliveries:
                raise _TooManyDeliveries(
                    f"delivered {received.deliveries} times (more than max_deliveries="
                    f"{self.max_deliveries}): it keeps failing or crashing workers"
                )
            messages = received.messages
            if messages is None:
                try:
                    parsed = await self._parse(received)
                except RegistryError as exc:
                    # Bad bytes are a DecodeError (permanent, not retried); an unreachable
                    # schema registry is retried until it is back, like a publisher.
                    parsed = await self.publish_retry.call(
                        lambda: self._parse(received),
                        lambda n, e: self._retried("parse", n, e),
                        failed=exc,
                    )
                messages = parsed if isinstance(parsed, list) else [parsed]
            outputs: list[Message] = []
            for message in messages:
                attempts = 1
                failed: Exception | None = None
                produced: list[Message] | None = None
                if self._slots is None:  # concurrency 1: the first attempt, directly
                    try:
                        produced = await self._operate(message)
                    except Exception as exc:
                        failed = exc
                if produced is None:

                    def retried(n: int, error: BaseException) -> None:
                        nonlocal attempts
                        attempts = n + 1
                        self._retried("operator", n, error)

                    produced = await self.retry.call(
                        functools.partial(self._operate_in_slot, message), retried, failed
                    )
                if (
                    self.operator.forwards_input
                    and len(messages) == 1
                    and len(produced) == 1
                    and produced[0] is message
                    and isinstance(received.data, bytes)
                ):
                    object.__setattr__(message, "_wire", received.data)
                outputs.extend(produced)
            return outputs
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return DeadLetter.from_exception(
                exc, received.data, received.source, attempts, self.name
            )

    async def _operate(self, message: Message) -> list[Message]:
        """One call of the operator, timed; its outputs as a list (checked)."""
        began = time.perf_counter()
        try:
            return _outputs(await self._calls.call(message))
        finally:
            self.metrics.processing.observe(time.perf_counter() - began)

    async def _operate_in_slot(self, message: Message) -> list[Message]:
        """:meth:`_operate` within the concurrency limit."""
        if self._slots is None:
            return await self._operate(message)
        async with self._slots:
            return await self._operate(message)

    async def _parse(self, received: Received) -> Message | list[Message]:
        """Parse; a parser's unexpected exception counts as undecodable input, not as a
        reason to retry (only RegistryError, an unreachable registry, is retried)."""
        try:
            return self.listener.parser.parse(received.data)
        except ArroyoError:
            raise
        except Exception as exc:
            parser = type(self.listener.parser).__name__
            raise DecodeError(f"{parser} could not parse the message: {exc!r}") from exc

    def _retried(self, step: str, attempt: int, error: BaseException) -> None:
        self.stats.retried += 1
        self.stats.retried_steps[step] += 1
        self._throttle(
            log, logging.WARNING, step, "%s failed (attempt %d), retrying: %r", step, attempt, error
        )

    async def _emit(
        self,
        order: asyncio.Queue[tuple[Received, asyncio.Task[list[Message] | DeadLetter]] | None],
    ) -> None:
        """Take results in input order and start their publication, without waiting for
        the confirmations of earlier ones."""
        while (entry := await order.get()) is not None:
            received, task = entry
            self._publish(received, await task)

    def _publish(self, received: Received, result: list[Message] | DeadLetter) -> None:
        """Send the outputs of ``received`` now, in order, without waiting for their
        confirmations (or its dead letter); the settler waits for them."""
        settle: _Sends | _Dead
        if isinstance(result, DeadLetter):
            settle = _Dead(result, self._dead.send(result))
        else:
            gates = [self._gates.get(p) or self._gate(p) for p in self.operator.publishers]
            settle = [(gate, message, gate.send(message)) for message in result for gate in gates]
        self._settling.append((received, settle))
        self._settle_more.set()

    def _gate(self, publisher: Publisher) -> OrderedSends:
        gate = self._gates[publisher] = OrderedSends(publisher)
        return gate

    async def _settle(self) -> None:
        """Settle each received message in input order: wait for its outputs'
        confirmations (or its dead letter's), then acknowledge it.

        Settled messages are acknowledged together, as soon as the next one is not
        confirmed yet (or at :data:`_ACK_BATCH`), so one broker round trip acknowledges
        many and no acknowledgement waits for later work. Returns when every emitted
        message is settled. When settling fails (a dead letter not taken), what was
        settled before is acknowledged, then the failure is raised (the Block stops).
        """
        pending, ready = self._settling, list[Received]()
        try:
            while True:
                if pending and not (
                    ready and (len(ready) >= _ACK_BATCH or not _confirmed(pending[0][1]))
                ):
                    received, result = pending[0]
                    if isinstance(result, _Dead):
                        await self._dead.confirm(result.letter, result.sent)
                    else:
                        await self._confirm(received, result)
                    pending.popleft()
                    ready.append(received)
                elif ready:
                    await self._ack(ready)
                    ready = []
                elif self._all_emitted:
                    return
                else:
                    self._settle_more.clear()
                    await self._settle_more.wait()
        except Exception:
            if ready:
                await self._ack(ready)
            raise

    async def _confirm(self, received: Received, sends: _Sends) -> None:
        """Wait for every publisher's confirmation (retrying failures, in order: later
        sends to that publisher are held back meanwhile); when one still fails, send the
        dead letter instead.

        A cancelled confirmation (the publisher abandoned the work, as an aborted Kafka
        transaction does) fails the Block: nothing from there on is acknowledged, and is
        redelivered.
        """
        failure: DeadLetter | None = None
        for gate, message, sent in sends:
            if gate.holding and gate.is_first_held(sent):
                gate.release()  # everything sent before the hold is settled
            try:
                await sent
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                raise PublishAbandoned(
                    f"{gate.publisher.name} abandoned {describe(message)}: stopping"
                ) from None
            except Exception as first:
                if failure is not None:
                    continue
                failure = await self._publish_again(received, gate, message, first)
                if failure is not None:
                    continue
            self.stats.published += 1
            self.metrics.latency.observe(max(0.0, time.time() - message.timestamp / 1e9))
        if failure is not None:
            await self._dead.confirm(failure, self._dead.send(failure))

    async def _publish_again(
        self, received: Received, gate: OrderedSends, message: Message, first: Exception
    ) -> DeadLetter | None:
        """Publish ``message`` again after its send failed with ``first``, holding later
        sends to that publisher back meanwhile; the dead letter when it still fails."""
        publisher = gate.publisher
        try:
            if isinstance(first, PermanentError):
                raise first
            gate.hold()
            if not isinstance(first, NotSent):  # a NotSent one was never tried: no retry
                self._retried("publish", 1, first)
            await self.publish_retry.call(
                lambda: publisher.publish(message),
                lambda n, e: self._retried("publish", n + 1, e),
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._throttle(
                log,
                logging.ERROR,
                f"publish-failed:{publisher.name}:{type(exc).__name__}",
                "publisher %s could not publish %s: %s",
                publisher.name,
                describe(message),
                exc,
            )
            return DeadLetter.from_exception(exc, received.data, received.source, 1, self.name)
        return None

    async def _ack(self, batch: list[Received]) -> None:
        """Acknowledge ``batch``; a failure is logged (the message will be redelivered)."""
        try:
            results = await self.listener.ack_many(batch)
        except Exception as exc:
            results = [exc] * len(batch)
        for received, error in zip(batch, results, strict=True):
            if error is None:
                self.stats.acknowledged += 1
            else:
                self._throttle(
                    log,
                    logging.WARNING,
                    "ack",
                    "could not acknowledge a message from %s (it will be redelivered): %r",
                    dict(received.source),
                    error,
                )
            self.intake.done(received)


class _TooManyDeliveries(PermanentError):
    """The broker delivered this message more often than max_deliveries."""


def _confirmed(result: _Sends | _Dead) -> bool:
    """True when every output (or the dead letter) was already confirmed (or failed):
    nothing to wait for."""
    if isinstance(result, _Dead):
        return result.sent is None or result.sent.done()
    return all(sent.done() for _, _, sent in result)


def _left(deadline: float | None) -> float | None:
    """Seconds until ``deadline`` (never negative); None for no deadline."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


async def _bounded(work: Awaitable[Any], seconds: float | None, what: str) -> bool:
    """Await ``work`` for at most ``seconds`` (None: no limit); then cancel it without
    waiting for it to end, log, and return False."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait((task,), timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        task.add_done_callback(_retrieve)
        raise
    if done:
        task.result()
        return True
    task.cancel()
    task.add_done_callback(_retrieve)
    log.warning("%s took longer than %.1f s: left as it is", what, seconds or 0.0)
    return False


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark the outcome of a future nobody awaits as seen (no 'never retrieved' warning)."""
    if not future.cancelled():
        future.exception()


class _CountingIntake:
    """The intake as the listener sees it: counts what comes in, stops at max_messages."""

    def __init__(self, block: Block) -> None:
        self._block = block
        self._intake = block.intake

    def _count(self, received: Received) -> None:
        block = self._block
        block.stats.received += 1
        block.stats.received_bytes += received.size
        if block.max_messages is not None and block.stats.received >= block.max_messages:
            self._intake.close()
            asyncio.get_running_loop().create_task(block.listener.stop())

    async def put(self, received: Received) -> None:
        if self._intake.offer(received):
            self._count(received)
            return
        if await self._intake.put(received):
            self._count(received)

    def offer(self, received: Received) -> bool:
        if self._intake.offer(received):
            self._count(received)
            return True
        return False

    def full(self) -> bool:
        return self._intake.full()
