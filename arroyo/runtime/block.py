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
import signal
import time
from collections import deque
from collections.abc import Awaitable, Coroutine, Iterable, Sequence
from typing import Any, Literal, TypeVar

from arroyo.errors import ArroyoError, DecodeError, PermanentError, RegistryError
from arroyo.message import Message
from arroyo.runtime import metrics
from arroyo.runtime.intake import BoundedIntake
from arroyo.runtime.listener import Listener, Received
from arroyo.runtime.logs import Throttle, current_block
from arroyo.runtime.operator import Operator, Passthrough
from arroyo.runtime.publisher import DeadLetter, Publisher
from arroyo.runtime.retry import RetryPolicy

log = logging.getLogger("arroyo.block")
T = TypeVar("T")

_Sends = list[tuple[Publisher, Message, Awaitable[None]]]
"""The outputs of one received message, each with what completes once it is confirmed."""

_ACK_BATCH = 512
"""At most this many acknowledgements are handed to the listener at once."""


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
    - ``retry``: for operator failures; ``publish_retry``: for publisher failures
      (default: until the destination is back). Then the dead letter.
    - ``dead_letter``: where bad messages go. Without one, they are logged and dropped.
    - ``max_deliveries``: a message the broker has delivered this many times (it keeps
      crashing workers) goes to the dead letter instead of being processed again. With
      the listener's delivery journal, the deliveries counted are those that ended in
      the death of a worker while processing the message (see
      :mod:`arroyo.runtime.journal`).
    - ``grace_period``: after :meth:`stop`, how long in-flight work may take to finish;
      what is not finished then is left unacknowledged, for redelivery.
    - ``max_messages``: stop after this many source messages (``--count``).
    - ``on_invalid``: what to do with a message that breaks a schema (cannot be decoded,
      or an output cannot be encoded): ``dead-letter`` it (default) or ``drop`` it
      (logged and counted in ``arroyo_dropped_total``).
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
        max_messages: int | None = None,
        on_invalid: Literal["dead-letter", "drop"] = "dead-letter",
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
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
        self.max_messages = max_messages
        self.on_invalid = on_invalid
        self.intake = BoundedIntake(queue_size, max_bytes)
        self.stats = metrics.BlockStats()
        self.metrics = metrics.BlockMetrics()
        metrics.register(self)
        self._stop_requested = asyncio.Event()
        self._throttle = Throttle()
        self._slots: asyncio.Semaphore | None = None
        self._settling: deque[tuple[Received, _Sends | DeadLetter]] = deque()
        self._settle_more = asyncio.Event()
        self._all_emitted = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._journal = listener.journal

    # -- running -------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the Block to stop: take no more input, finish in-flight work, acknowledge,
        close. Safe to call from a signal handler (on the loop thread), and more than once."""
        self._stop_requested.set()

    async def run(self) -> metrics.BlockStats:
        """Run until the source ends or :meth:`stop` is called; return what was done.

        Raises what the listener raised (after finishing in-flight work), or what
        starting a publisher raised (before taking any input).
        """
        token = current_block.set(self.name)
        self._slots = asyncio.Semaphore(self.concurrency) if self.concurrency > 1 else None
        self.listener.operator = self.operator
        started: list[Publisher | Operator] = []
        began = False
        try:
            await self.listener.connect()
            if self._journal is not None:
                self._journal.open()
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
            began = True
            await self._run()
        finally:
            await self._close(started)
            if self._journal is not None:
                self._journal.close()
            log.log(  # a failed start is the one line to read: no summary beside it
                logging.INFO if began else logging.DEBUG,
                "stopped: %d received, %d published, %d acknowledged, %d dead-lettered",
                self.stats.received,
                self.stats.published,
                self.stats.acknowledged,
                self.stats.dead_lettered,
            )
            current_block.reset(token)
        return self.stats

    async def _run(self) -> None:
        listen = asyncio.create_task(self._listen(), name=f"{self.name}-listen")
        work = asyncio.create_task(self._work(), name=f"{self.name}-work")
        stop = asyncio.create_task(self._stop_requested.wait())
        try:
            await asyncio.wait({listen, stop}, return_when=asyncio.FIRST_COMPLETED)
            deadline: float | None = None
            if not listen.done():
                log.info("stopping: no more input; finishing in-flight work")
                deadline = time.monotonic() + self.grace_period
                await self.listener.stop()
                await asyncio.wait({listen}, timeout=self.grace_period)
            elif not listen.cancelled() and listen.exception() is not None:
                deadline = time.monotonic() + self.grace_period  # no waiting for ever
            self.intake.close()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            await asyncio.wait({work}, timeout=timeout)
            if not work.done():
                log.warning(
                    "grace period of %.1f s is over: %d messages left unacknowledged "
                    "(they will be redelivered)",
                    self.grace_period,
                    self.intake.held,
                )
            if listen.done() and not listen.cancelled() and listen.exception() is not None:
                raise listen.exception()  # type: ignore[misc]
            if work.done() and not work.cancelled() and work.exception() is not None:
                raise work.exception()  # type: ignore[misc]
        finally:
            tasks = (stop, listen, work, *self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _listen(self) -> None:
        try:
            await self.listener.start(_CountingIntake(self))
        except ArroyoError:
            raise  # its one line is logged by run_blocks
        except Exception:
            log.exception("listener %s failed", self.listener.name)
            raise
        finally:
            self.intake.close()

    async def _close(self, started: Sequence[Publisher | Operator]) -> None:
        try:
            await self.listener.close()
        except Exception:
            log.exception("closing listener %s failed", self.listener.name)
        for part in reversed(started):
            try:
                await part.close()
            except Exception:
                log.exception("closing %s failed", getattr(part, "name", type(part).__name__))

    # -- the pipeline --------------------------------------------------------------

    async def _work(self) -> None:
        """Process each message in arrival order; publish the results in that order.

        With concurrency 1 the messages are processed one after the other, here; above,
        each is processed in a task of its own and an emitter keeps the order. A settler
        waits for the confirmations and acknowledges.
        """
        settler = self._task(self._settle())
        journal = self._journal
        process = self._process if journal is None else self._journaled
        if self.concurrency == 1:
            while (received := await self.intake.get()) is not None:
                if journal is None:
                    self._publish(received, await self._process(received))
                else:  # as _journaled does, without a coroutine more per message
                    slot = journal.start(received)
                    result = await self._process(received)
                    journal.finish(slot)
                    self._publish(received, result)
        else:
            order: asyncio.Queue[
                tuple[Received, asyncio.Task[list[Message] | DeadLetter]] | None
            ] = asyncio.Queue()
            emitter = self._task(self._emit(order))
            started = deque[asyncio.Task[Any]]()
            try:
                while (received := await self.intake.get()) is not None:
                    # A message that was being processed when a worker died is processed
                    # alone: if it kills this worker too, it alone is counted.
                    alone = journal is not None and journal.suspect(received)
                    if alone and started:
                        await asyncio.wait(started)
                    task = self._task(process(received))
                    order.put_nowait((received, task))
                    if journal is not None:
                        while started and started[0].done():
                            started.popleft()
                        started.append(task)
                    if alone:
                        await asyncio.wait((task,))
            finally:
                order.put_nowait(None)
            await emitter
        self._all_emitted = True
        self._settle_more.set()
        await settler

    def _task(self, coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """A task of this Block, cancelled if the Block is cancelled."""
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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

    async def _journaled(self, received: Received) -> list[Message] | DeadLetter:
        """:meth:`_process`, recorded in the listener's delivery journal while it runs
        (which also sets ``received.deliveries``). Cancelled (abandoned at the end of the
        grace period), it stays recorded: the journal counts it when it is closed."""
        assert self._journal is not None
        slot = self._journal.start(received)
        result = await self._process(received)
        self._journal.finish(slot)
        return result

    async def _operate(self, message: Message) -> list[Message]:
        """One call of the operator, timed; its outputs as a list (checked)."""
        began = time.perf_counter()
        try:
            return _outputs(await self.operator.process(message))
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
        confirmations; the settler waits for them (or sends the dead letter)."""
        settle: _Sends | DeadLetter
        if isinstance(result, DeadLetter):
            settle = result
        else:
            settle = [
                (publisher, message, _send(publisher, message))
                for message in result
                for publisher in list(self.operator.publishers)
            ]
        self._settling.append((received, settle))
        self._settle_more.set()

    async def _settle(self) -> None:
        """Settle each received message in input order: wait for its outputs'
        confirmations (or send its dead letter), then acknowledge it.

        Settled messages are acknowledged together, as soon as the next one is not
        confirmed yet (or at :data:`_ACK_BATCH`), so one broker round trip acknowledges
        many and no acknowledgement waits for later work. Returns when every emitted
        message is settled.
        """
        pending, ready = self._settling, list[Received]()
        while True:
            if pending and not (
                ready and (len(ready) >= _ACK_BATCH or not _confirmed(pending[0][1]))
            ):
                received, result = pending.popleft()
                if isinstance(result, DeadLetter):
                    await self._dead_letter(received, result)
                else:
                    await self._confirm(received, result)
                ready.append(received)
            elif ready:
                await self._ack(ready)
                ready = []
            elif self._all_emitted:
                return
            else:
                self._settle_more.clear()
                await self._settle_more.wait()

    async def _confirm(self, received: Received, sends: _Sends) -> None:
        """Wait for every publisher's confirmation (retrying failures); when one still
        fails, send the dead letter instead.

        A cancelled confirmation (the publisher abandoned the work, as an aborted Kafka
        transaction does) ends the settling: nothing from there on is acknowledged, and
        is redelivered after the listener's failure ends the Block.
        """
        failure: DeadLetter | None = None
        for publisher, message, sent in sends:
            try:
                await sent
            except asyncio.CancelledError:
                raise
            except Exception as first:
                if failure is not None:
                    continue
                try:
                    if isinstance(first, PermanentError):
                        raise first
                    self._retried("publish", 1, first)
                    await self.publish_retry.call(
                        lambda p=publisher, m=message: p.publish(m),  # type: ignore[misc]
                        lambda n, e: self._retried("publish", n + 1, e),
                    )
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.error(
                        "publisher %s could not publish %s: %s", publisher.name, message.id, exc
                    )
                    failure = DeadLetter.from_exception(
                        exc, received.data, received.source, 1, self.name
                    )
                    continue
            self.stats.published += 1
            self.metrics.latency.observe(max(0.0, time.time() - message.timestamp / 1e9))
        if failure is not None:
            await self._dead_letter(received, failure)

    async def _dead_letter(self, received: Received, letter: DeadLetter) -> None:
        """Send ``letter`` to the dead-letter destination (until it confirms), or drop it
        (counted) when there is none or the policy says so."""
        source = ", ".join(f"{k}={v}" for k, v in letter.source.items())
        destination = self.dead_letter
        if letter.invalid and self.on_invalid == "drop":
            self.stats.dropped += 1
            log.warning("dropped an invalid message from %s: %s", source, letter.reason)
        elif destination is None:
            self.stats.dropped += 1
            log.error(
                "dropped a bad message (no dead-letter destination configured) from %s: %s: %s",
                source,
                letter.error,
                letter.reason,
            )
        else:
            log.warning("dead letter from %s: %s: %s", source, letter.error, letter.reason)
            await RetryPolicy(None).call(
                lambda: destination.publish_dead_letter(letter),
                lambda n, e: self._retried("dead-letter", n, e),
            )
            self.stats.dead_lettered += 1

    async def _ack(self, batch: list[Received]) -> None:
        """Acknowledge ``batch``; a failure is logged (the message will be redelivered)."""
        try:
            results = await self.listener.ack_many(batch)
        except Exception as exc:
            results = [exc] * len(batch)
        journal = self._journal
        for received, error in zip(batch, results, strict=True):
            if error is None:
                self.stats.acknowledged += 1
                if journal is not None and journal.crashes:
                    journal.settled(received)
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


def _confirmed(result: _Sends | DeadLetter) -> bool:
    """True when every output was already confirmed (or failed): nothing to wait for."""
    return not isinstance(result, DeadLetter) and all(
        isinstance(sent, asyncio.Future) and sent.done() for _, _, sent in result
    )


def _send(publisher: Publisher, message: Message) -> Awaitable[None]:
    """publisher.send(message), with a synchronous failure turned into a failed future."""
    try:
        return publisher.send(message)
    except Exception as exc:
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        failed.set_exception(exc)
        return failed


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


_early_signals: list[int] = []


def catch_early_signals() -> None:
    """Remember SIGTERM/SIGINT received before :func:`run_blocks` installs its handlers
    (while a worker imports and builds its config); run_blocks then stops at once."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda received, frame: _early_signals.append(received))


async def run_blocks(blocks: Sequence[Block], handle_signals: bool = True) -> int:
    """Run blocks until all end; SIGTERM/SIGINT stop them gracefully (a second signal
    cancels at once). Returns 0 when every block ended cleanly, 1 otherwise."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    tasks = [asyncio.create_task(block.run(), name=block.name) for block in blocks]
    count = 0

    def on_signal(signum: int) -> None:
        nonlocal count
        count += 1
        if count == 1:
            log.info("received %s: stopping gracefully", signal.Signals(signum).name)
            for block in blocks:
                block.stop()
        else:
            log.warning("received %s again: stopping now", signal.Signals(signum).name)
            for task in tasks:
                task.cancel()

    if handle_signals:
        for signum in signals:
            loop.add_signal_handler(signum, on_signal, signum)
        while _early_signals:
            on_signal(_early_signals.pop(0))
    try:
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        if handle_signals:
            for signum in signals:
                loop.remove_signal_handler(signum)
    failed = 0
    for block, result in zip(blocks, results, strict=True):
        if isinstance(result, BaseException):
            failed += 1
            if not isinstance(result, asyncio.CancelledError):
                trace = None if isinstance(result, ArroyoError) else result  # one line
                log.error("block %s failed: %s", block.name, result, exc_info=trace)
    return 1 if failed else 0
