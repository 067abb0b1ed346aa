"""Operator: the processing step between a listener and its publishers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Literal

from arroyo.codec import decode, encode
from arroyo.message import Message

if TYPE_CHECKING:
    from arroyo.runtime.publisher import Publisher

Output = Message | list[Message] | None
"""What process() returns: a message, several, or None to publish nothing."""


class Operator(ABC):
    """Processes each message and returns what to publish.

    The Block sends what :meth:`process` returns to every publisher in
    :attr:`publishers`. State belongs to the instance: nothing is shared between
    operators through the class. Messages are immutable: to change one, make a new one
    (``dataclasses.replace``); never change a message's metadata in place.
    """

    forwards_input: ClassVar[bool] = False
    """True when process() returns its input untouched (never mutated in place): the
    Block then lets publishers send the bytes as received instead of encoding again."""

    @property
    def publishers(self) -> list[Publisher]:
        """The publishers this operator's outputs go to (added by the Block)."""
        try:
            return self._publishers
        except AttributeError:
            self._publishers: list[Publisher] = []
            return self._publishers

    def add_publisher(self, publisher: Publisher) -> None:
        """Send outputs to ``publisher`` too (a publisher is added once)."""
        if publisher not in self.publishers:
            self.publishers.append(publisher)

    def remove_publisher(self, publisher: Publisher) -> None:
        """Stop sending outputs to ``publisher``; messages already sent are still confirmed."""
        if publisher in self.publishers:
            self.publishers.remove(publisher)

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

    async def close(self) -> None:
        """Release what start() took. Called once, after the last message."""


class Passthrough(Operator):
    """Publishes every message it receives, unchanged (forwarded byte for byte when the
    publisher writes the same framing as the source)."""

    forwards_input = True

    async def process(self, message: Message) -> Output:
        """Return ``message``."""
        return message


class BlockingOperator(Operator):
    """An operator written as plain blocking code: implement :meth:`compute`.

    ``compute`` runs in a thread pool of ``workers`` threads, so a slow call (file I/O,
    numpy releasing the GIL, a C library) does not stall the event loop. For pure-Python
    CPU-heavy work, use :class:`FunctionOperator` with ``executor="process"``.
    """

    def __init__(self, workers: int = 4) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=type(self).__name__
        )

    @abstractmethod
    def compute(self, message: Message) -> Output:
        """Handle one message (in a worker thread); same contract as process()."""

    async def process(self, message: Message) -> Output:
        """Run :meth:`compute` in the thread pool."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.compute, message)

    async def close(self) -> None:
        """Wait for the worker threads to finish."""
        self._pool.shutdown(wait=True)


def _in_worker(func: Callable[[Message], Output], data: bytes) -> list[bytes]:
    """Run ``func`` in a worker process; messages cross the process boundary as Avro."""
    out = func(decode(data))
    if out is None:
        return []
    return [encode(m) for m in (out if isinstance(out, list) else [out])]


class FunctionOperator(Operator):
    """Runs a plain function ``func(message) -> output`` in a thread or process pool.

    With ``executor="process"`` the function must be importable by name (defined at the
    top of a module), and messages travel to and from the worker processes as Avro.
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
        self._pool: concurrent.futures.Executor | None = None

    async def start(self) -> None:
        """Start the worker pool."""
        if self.executor == "process":
            import multiprocessing

            context = multiprocessing.get_context("spawn")
            self._pool = concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=context)
        else:
            self._pool = concurrent.futures.ThreadPoolExecutor(self.workers)

    async def process(self, message: Message) -> Output:
        """Call the function in the pool."""
        if self._pool is None:
            await self.start()
        loop = asyncio.get_running_loop()
        if self.executor == "thread":
            return await loop.run_in_executor(self._pool, self.func, message)
        call = functools.partial(_in_worker, self.func, encode(message))
        return [decode(data) for data in await loop.run_in_executor(self._pool, call)]

    async def close(self) -> None:
        """Shut the pool down."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
