"""Operator: the processing step between a listener and its publishers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

from arroyo.codec import decode, encode
from arroyo.message import Message
from arroyo.runtime.threads import AbandonablePool

Output = Message | list[Message] | None
"""What process() returns: a message, several, or None to publish nothing."""


class Operator(ABC):
    """Processes each message and returns what to publish.

    The Block sends what :meth:`process` returns to every one of its publishers (the
    Block owns them: :meth:`Block.add_publisher`). State belongs to the instance: nothing
    is shared between operators through the class. Messages are immutable: to change
    one, make a new one (``dataclasses.replace``); never change a message's metadata in
    place.
    """

    forwards_input: ClassVar[bool] = False
    """True when process() returns its input untouched (never mutated in place): the
    Block then lets publishers send the bytes as received instead of encoding again."""

    async def start(self) -> None:
        """Prepare (load a model, open a file). Called once before the first message."""

    @abstractmethod
    async def process(self, message: Message) -> Output:
        """Handle one message; return the message(s) to publish, or None for nothing.

        Runs on the event loop: do not block it (see :class:`BlockingOperator`). Several
        calls run at once when the Block's concurrency is above 1; their outputs are still
        published in input order. An exception means failure: the Block retries
        (a PermanentError is not retried), then dead-letters the input.
        """

    async def process_batch(self, messages: Sequence[Message]) -> list[Output]:
        """Handle several messages in one call (one numpy call over a stack of frames, one
        query for many keys); return one output per message, in their order, each what
        :meth:`process` would return for it (a message, a list of them, or None).

        The Block calls this instead of :meth:`process` when the operator overrides it
        and the Block's ``concurrency`` is 1, with the messages of what the listener
        handed over together (a Kafka ``consume()``, a Redis ``XREADGROUP COUNT``, the
        frames a ZeroMQ socket had ready), at most the Block's ``batch_size``. Messages
        that cannot be parsed are not in it (they go to the dead letter alone).

        When it raises, or returns other than one output per message, none of its
        outputs are published: the Block processes those messages again one by one with
        :meth:`process`, each with its retries, so that only a message that fails alone
        goes to the dead letter. So :meth:`process` must be implemented too, and a
        batch may be processed a second time (message by message). Messages that were
        being processed when a worker died are processed one by one with
        :meth:`process` as well (see :mod:`arroyo.runtime.journal`). The default calls
        :meth:`process` for each message in turn.
        """
        return [await self.process(message) for message in messages]

    async def close(self) -> None:
        """Release what start() took. Called once, after the last message."""


def batched(operator: Operator) -> bool:
    """True when ``operator`` overrides :meth:`Operator.process_batch`."""
    method = getattr(type(operator), "process_batch", Operator.process_batch)
    return method is not Operator.process_batch


class Passthrough(Operator):
    """Publishes every message it receives, unchanged (forwarded byte for byte when the
    publisher writes the same framing as the source)."""

    forwards_input = True

    async def process(self, message: Message) -> Output:
        """Return ``message``."""
        return message

    async def process_batch(self, messages: Sequence[Message]) -> list[Output]:
        """Return the messages."""
        return list(messages)


class BlockingOperator(Operator):
    """An operator written as plain blocking code: implement :meth:`compute`.

    ``compute`` runs in a pool of ``workers`` threads, so a slow call (file I/O, numpy
    releasing the GIL, a C library) does not stall the event loop. For pure-Python
    CPU-heavy work, use :class:`FunctionOperator` with ``executor="process"``.

    A call the Block gives up on (the operator's ``timeout``, or the end of the grace
    period at a stop) cannot be stopped: its thread is abandoned, left to run on while
    another thread takes its place, and the process can exit without it.
    """

    def __init__(self, workers: int = 4) -> None:
        self._pool = AbandonablePool(workers, type(self).__name__)

    @abstractmethod
    def compute(self, message: Message) -> Output:
        """Handle one message (in a worker thread); same contract as process()."""

    async def process(self, message: Message) -> Output:
        """Run :meth:`compute` in the thread pool."""
        return await _in_pool(self._pool, self.compute, message)

    async def close(self) -> None:
        """Wait for the calls still running (not for abandoned ones), then end the threads."""
        await _shut(self._pool)


async def _in_pool(
    pool: AbandonablePool, func: Callable[[Message], Output], message: Message
) -> Output:
    """``func(message)`` in ``pool``; when the caller stops waiting, the call's thread is
    abandoned (it cannot be stopped)."""
    future = pool.submit(func, message)
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        if not future.cancel():
            pool.abandon(future)
        raise


async def _shut(pool: AbandonablePool) -> None:
    """Shut ``pool`` down without blocking the event loop: wait for the calls running
    (abandoned ones excepted), asynchronously, so that the caller can bound the wait."""
    pool.shutdown(wait=False, cancel_futures=True)
    running = [asyncio.wrap_future(f) for f in pool.running()]
    if running:
        await asyncio.wait(running)


def _in_worker(func: Callable[[Message], Output], data: bytes) -> list[bytes]:
    """Run ``func`` in a worker process; messages cross the process boundary as Avro."""
    out = func(decode(data))
    if out is None:
        return []
    return [encode(m) for m in (out if isinstance(out, list) else [out])]


class FunctionOperator(Operator):
    """Runs a plain function ``func(message) -> output`` in a thread or process pool.

    With ``executor="process"`` the function must be importable by name (defined at the
    top of a module), and messages travel to and from the worker processes as Avro. A
    call the Block gives up on is abandoned (thread) or its worker process is ended at
    close (process).
    """

    def __init__(
        self,
        func: Callable[[Message], Output] | str,
        executor: Literal["thread", "process"] = "thread",
        workers: int | None = None,
    ) -> None:
        if isinstance(func, str):
            module, _, attr = func.partition(":")
            func = getattr(importlib.import_module(module), attr)
        self.func: Callable[[Message], Output] = func  # type: ignore[assignment]
        self.executor = executor
        self.workers = workers
        self._threads: AbandonablePool | None = None
        self._processes: concurrent.futures.ProcessPoolExecutor | None = None
        self._running: set[concurrent.futures.Future[list[bytes]]] = set()
        self._gave_up = False

    async def start(self) -> None:
        """Start the worker pool."""
        if self.executor == "process":
            import multiprocessing

            context = multiprocessing.get_context("spawn")
            self._processes = concurrent.futures.ProcessPoolExecutor(
                self.workers, mp_context=context
            )
        else:
            workers = self.workers or min(32, (os.cpu_count() or 1) + 4)
            self._threads = AbandonablePool(workers, getattr(self.func, "__name__", "function"))

    async def process(self, message: Message) -> Output:
        """Call the function in the pool."""
        if self._threads is None and self._processes is None:
            await self.start()
        if self._threads is not None:
            return await _in_pool(self._threads, self.func, message)
        assert self._processes is not None
        future = self._processes.submit(_in_worker, self.func, encode(message))
        self._running.add(future)
        future.add_done_callback(self._running.discard)
        try:
            results = await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            self._gave_up = self._gave_up or not future.cancel()
            raise
        return [decode(data) for data in results]

    async def close(self) -> None:
        """Shut the pool down: wait for the calls still running, except those given up
        (their threads are abandoned; worker processes running one are ended)."""
        threads, self._threads = self._threads, None
        if threads is not None:
            await _shut(threads)
        processes, self._processes = self._processes, None
        if processes is None:
            return
        if self._gave_up:
            _end_workers(processes)
        processes.shutdown(wait=False, cancel_futures=True)
        running = [asyncio.wrap_future(f) for f in self._running]
        try:
            if running:
                await asyncio.wait(running)
        except asyncio.CancelledError:
            _end_workers(processes)
            raise


def _end_workers(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Terminate the worker processes of ``pool`` (a call in one of them hangs)."""
    workers: dict[int, Any] = getattr(pool, "_processes", None) or {}  # no public API < 3.14
    for process in list(workers.values()):
        process.terminate()
