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
import logging
import time
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any, Literal, TypeVar

from arroyo.errors import ArroyoError
from arroyo.runtime import heap, metrics
from arroyo.runtime.calls import OperatorCalls
from arroyo.runtime.deadletters import DeadLetters
from arroyo.runtime.frames import FrameAccounting
from arroyo.runtime.intake import BoundedIntake, CountingIntake
from arroyo.runtime.lag import DEFAULT_INTERVAL, LagWatch
from arroyo.runtime.listener import Listener
from arroyo.runtime.logs import Throttle, current_block
from arroyo.runtime.operator import Operator, Passthrough, batched
from arroyo.runtime.parser import AvroParser
from arroyo.runtime.process import InvalidOutput, Processor
from arroyo.runtime.publisher import Publisher
from arroyo.runtime.readiness import Readiness
from arroyo.runtime.retry import RetryPolicy
from arroyo.runtime.settle import Settler
from arroyo.runtime.tasks import bounded, left, retrieve
from arroyo.runtime.work import Pipeline

__all__ = ["Block", "InvalidOutput"]

log = logging.getLogger("arroyo.block")
T = TypeVar("T")

CLOSE_TIMEOUT = 10.0
"""After the stop, how long closing may take in all (commit, disconnect): with the grace
period, the bound on a stop."""

ABORT_CLOSE_TIMEOUT = 1.0
"""The same after :meth:`Block.abort` (a second signal)."""

_CANCEL_TIMEOUT = 2.0
"""How long the Block's tasks get to end once cancelled (they are left behind after)."""

_FIRST = asyncio.FIRST_COMPLETED


class Block:
    """Runs ``listener -> operator -> publishers`` with at-least-once delivery.

    - ``queue_size`` / ``max_bytes``: at most this many messages (and bytes) are held
      between the listener and their acknowledgement; a full Block pauses the listener.
    - ``concurrency``: how many ``operator.process`` calls run at once.
    - ``batch_size``: at most this many messages go to one call of the operator's
      ``process_batch`` (with concurrency 1, for an operator that overrides it: see
      :meth:`Operator.process_batch`); a batch is what waits in the intake when the
      Block takes the next work, so it grows only when the operator is slower than the
      input.
    - ``retry``: for operator failures; ``publish_retry``: for publisher and dead-letter
      failures (default: until the destination is back). Then the dead letter.
    - ``dead_letter``: where bad messages go. Without one, they are logged and dropped
      (counted). A dead letter the destination does not take stops the Block.
    - ``max_deliveries``: a message the broker has delivered this many times (it keeps
      crashing workers) goes to the dead letter instead of being processed again. With
      the listener's delivery journal, the deliveries counted are those that ended in
      the death of a worker while processing the message (see
      :mod:`arroyo.runtime.journal`).
    - ``grace_period``: after :meth:`stop`, how long in-flight work may take to finish;
      what is not finished then is left unacknowledged, for redelivery (calls still
      running are abandoned). Closing then takes at most :data:`CLOSE_TIMEOUT` more.
    - ``operator_timeout``: a call of the operator that takes longer fails (retried, then
      dead-lettered). ``hung_after``: a call running this long is logged as hung.
    - ``max_messages``: stop after this many source messages (``--count``).
    - ``frame_accounting``: count each run's frames (missing, duplicated, out of order)
      by the source's own frame counter, in metrics and in the run's Stop
      (:mod:`arroyo.runtime.frames`). None (default): on for instrument formats (a
      parser with a frame counter), off for Arroyo's own messages, whose ``seq`` an
      upstream operator may leave gaps in on purpose.
    - ``on_invalid``: what to do with a message that breaks a schema (cannot be decoded,
      or an output cannot be encoded): ``dead-letter`` it (default) or ``drop`` it
      (logged and counted in ``arroyo_dropped_total``).
    - ``lag_interval``: seconds between two refreshes of ``arroyo_lag_messages`` and
      ``arroyo_connected`` (:mod:`arroyo.runtime.lag`, off the hot path); None: never.

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
        batch_size: int = 1000,
        retry: RetryPolicy | None = None,
        publish_retry: RetryPolicy | None = None,
        max_deliveries: int | None = 5,
        grace_period: float = 30.0,
        operator_timeout: float | None = None,
        hung_after: float = 60.0,
        max_messages: int | None = None,
        on_invalid: Literal["dead-letter", "drop"] = "dead-letter",
        frame_accounting: bool | None = None,
        lag_interval: float | None = DEFAULT_INTERVAL,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if operator_timeout is not None and operator_timeout <= 0:
            raise ValueError(f"operator_timeout must be positive, got {operator_timeout}")
        self.name = name
        self.listener = listener
        self.operator = operator if operator is not None else Passthrough()
        self.publishers: list[Publisher] = []
        """Where the operator's outputs go, each in input order (see add_publisher)."""
        for publisher in publishers:
            self.add_publisher(publisher)
        self.dead_letter = dead_letter
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.retry = retry if retry is not None else RetryPolicy()
        self.publish_retry = publish_retry if publish_retry is not None else RetryPolicy(None)
        self.max_deliveries = max_deliveries
        self.grace_period = grace_period
        self.operator_timeout = operator_timeout
        self.hung_after = hung_after
        self.max_messages = max_messages
        self.on_invalid = on_invalid
        self.frame_accounting = frame_accounting
        self.intake = BoundedIntake(queue_size, max_bytes)
        self.stats = metrics.BlockStats()
        self.metrics = metrics.BlockMetrics()
        metrics.register(self)
        if lag_interval is not None and lag_interval <= 0:
            raise ValueError(f"lag_interval must be positive (or None: off), got {lag_interval}")
        self.lag_interval = lag_interval
        interval = lag_interval or DEFAULT_INTERVAL
        self.readiness = Readiness()
        """Whether this Block can work now (``/readyz``: :mod:`arroyo.runtime.health`)."""
        self.lag_watch = LagWatch(
            name, listener, self._connections, interval, lambda: self.readiness.failing()
        )
        """The lag and connection gauges (:mod:`arroyo.runtime.lag`), refreshed every
        ``lag_interval`` seconds while the Block runs (None: never)."""
        self.abandoned = 0
        """Messages left unacknowledged when the grace period ended (0 after a clean stop)."""
        self._stop_requested = asyncio.Event()
        self._throttle = Throttle()
        self._calls = OperatorCalls(self.operator, operator_timeout, hung_after, self._throttle)
        self._processor, self._settler = self._parts()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failure: BaseException | None = None
        self._failed = asyncio.Event()
        self._aborting = False
        self._running: asyncio.Task[Any] | None = None
        self._journal = listener.journal

    def _parts(self) -> tuple[Processor, Settler]:
        """What processes and what settles, made from the Block's settings as they are."""
        slots = asyncio.Semaphore(self.concurrency) if self.concurrency > 1 else None
        throttle, stats = self._throttle, self.stats
        processor = Processor(
            self.name,
            self.listener,
            self._calls,
            self.retry,
            self.publish_retry,
            self.max_deliveries,
            slots,
            stats,
            self.metrics,
            throttle,
            self._frames(),
        )
        dead = DeadLetters(
            self.dead_letter, self.on_invalid, self.publish_retry, stats, throttle, self.readiness
        )
        settler = Settler(
            self.name,
            self.listener,
            lambda: self.publishers,
            self.intake,
            dead,
            self.publish_retry,
            stats,
            self.metrics,
            throttle,
            self.readiness,
        )
        return processor, settler

    def _connections(self) -> list[tuple[str, Publisher]]:
        """The publishers and the dead letter, with their role (``arroyo_connected``)."""
        out = [("publisher", p) for p in self.publishers]
        if self.dead_letter is not None:
            out.append(("dead_letter", self.dead_letter))
        return out

    def add_publisher(self, publisher: Publisher) -> None:
        """Send the operator's outputs to ``publisher`` too (once, however often it is
        added). Before :meth:`run`, or while running for a publisher already started."""
        if publisher not in self.publishers:
            self.publishers.append(publisher)

    def remove_publisher(self, publisher: Publisher) -> None:
        """Send no more outputs to ``publisher``; what was sent to it is still confirmed
        (and acknowledged) as before."""
        if publisher in self.publishers:
            self.publishers.remove(publisher)

    def _frames(self) -> FrameAccounting | None:
        """The frame accounting ``frame_accounting`` asks for (see the class docstring)."""
        parser = self.listener.parser
        parser = getattr(parser, "wrapped", parser)  # a parser that wraps another (ZeroMQ)
        wanted = self.frame_accounting
        if wanted is None:
            wanted = not isinstance(parser, AvroParser)
        return FrameAccounting.for_parser(parser, self.name) if wanted else None

    # -- running -------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the Block to stop: take no more input, finish in-flight work, acknowledge,
        close. Safe to call from a signal handler (on the loop thread), and more than once."""
        self.readiness.stopping = True
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

        The first Block of a process sets Python's garbage collector for many small
        messages (:func:`arroyo.runtime.heap.tune`; ``ARROYO_GC=python``: not).
        """
        heap.tune()  # the first Block of the process: see arroyo.runtime.heap
        token = current_block.set(self.name)
        self._running = asyncio.current_task()
        self._calls.operator = self.operator
        self._processor, self._settler = self._parts()
        started: list[Publisher | Operator] = []
        began = False
        try:
            await self.listener.connect()
            if self._journal is not None:
                self._journal.open()
            for part in [*self.publishers, *filter(None, [self.dead_letter])]:
                await part.start()
                started.append(part)
            await self.operator.start()
            started.append(self.operator)
            log.info(
                "started: %s -> %s -> %s",
                self.listener.name,
                type(self.operator).__name__,
                ", ".join(p.name for p in self.publishers) or "(no publishers)",
            )
            began = True
            self.readiness.state = "running"
            await self._run()
        finally:
            self.readiness.state = "stopped"
            try:
                await self._close(started)
            finally:
                if self._journal is not None:
                    self._journal.close()
                self._throttle.flush()
                stats = self.stats
                log.log(  # a failed start is the one line to read: no summary beside it
                    logging.INFO if began else logging.DEBUG,
                    "stopped: %d received, %d published, %d acknowledged, %d dead-lettered, "
                    "%d dropped, %d retried%s%s",
                    stats.received,
                    stats.published,
                    stats.acknowledged,
                    stats.dead_lettered,
                    stats.dropped,
                    stats.retried,
                    f", {stats.handed_back} handed back" if stats.handed_back else "",
                    f", {self.abandoned} left unacknowledged" if self.abandoned else "",
                )
                current_block.reset(token)
        return self.stats

    async def _run(self) -> None:
        listen = asyncio.create_task(self._listen(), name=f"{self.name}-listen")
        pipeline = Pipeline(
            self.intake,
            self._processor,
            self._settler,
            self._journal,
            batched(self.operator),
            self.concurrency,
            self.batch_size,
            self._task,
        )
        work = self._task(pipeline.run())
        self._task(self._calls.watch())
        if self.lag_interval:
            self.lag_watch.interval = self.lag_interval
            self._task(self.lag_watch.run())
        stop = asyncio.create_task(self._stop_requested.wait())
        failed = asyncio.create_task(self._failed.wait())
        try:
            await asyncio.wait({listen, stop, failed}, return_when=_FIRST)
            deadline: float | None = None
            if not listen.done() and self._failure is None:
                log.info("stopping: no more input; finishing in-flight work")
                deadline = time.monotonic() + self.grace_period
                await bounded(self.listener.stop(), self.grace_period, "stopping the listener")
                await asyncio.wait({listen, failed}, timeout=left(deadline), return_when=_FIRST)
            elif listen.done() and not listen.cancelled() and listen.exception() is not None:
                deadline = time.monotonic() + self.grace_period  # no waiting for ever
            self.intake.close()
            if self._failure is None:
                await asyncio.wait({work, failed}, timeout=left(deadline), return_when=_FIRST)
            if self._failure is not None:
                log.error("stopping at once: %s", self._failure)
                await bounded(self.listener.stop(), _CANCEL_TIMEOUT, "stopping the listener")
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
            done, behind = await asyncio.wait(tasks, timeout=timeout)
            for task in done:
                retrieve(task)
            if behind:
                log.warning(
                    "%d task(s) did not end within %.0f s of being cancelled: left behind",
                    len(behind),
                    timeout,
                )
            self._settler.leave()

    async def _listen(self) -> None:
        try:
            await self.listener.start(CountingIntake(self))
        except ArroyoError:
            raise  # its one line is logged by run_blocks
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
                await bounded(part.close(), left(deadline) or 0.0, f"closing {name}")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("closing %s failed", name)

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
