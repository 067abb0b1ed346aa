"""A thread pool for blocking operator code whose hung calls can be left behind.

Python cannot stop a thread. :class:`concurrent.futures.ThreadPoolExecutor` waits for
its threads at shutdown and at interpreter exit, so one ``compute()`` that never
returns keeps the process alive for ever. Here the threads are daemon threads (the
process may exit while they run), and a call whose caller gave up (a timeout, the end
of the grace period) can be *abandoned*: its thread no longer counts, and another one
takes its place, so the pool keeps its size while the hung thread runs on, unused.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

log = logging.getLogger("arroyo.operator")
T = TypeVar("T")

MAX_ABANDONED = 64
"""A pool replaces at most this many abandoned threads; beyond, calls wait for a thread
(and time out): something is hanging on every call and more threads would not help."""

_Work = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class AbandonablePool(Executor):
    """Runs calls in up to ``workers`` daemon threads (started on demand)."""

    def __init__(self, workers: int, name: str = "arroyo") -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        self.name = name
        self.abandoned = 0
        """How many threads were left running a call nobody waits for."""
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = threading.Semaphore(0)
        self._threads: set[threading.Thread] = set()
        self._running: dict[Future[Any], threading.Thread] = {}
        self._left: set[threading.Thread] = set()
        self._counter = itertools.count(1)
        self._shutdown = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Queue ``fn(*args, **kwargs)``; a thread runs it as soon as one is free."""
        future: Future[T] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError(f"{self.name}: the pool is shut down")
            self._queue.put((future, fn, args, kwargs))
            self._grow()
        return future

    def _grow(self) -> None:
        """Start a thread unless an idle one will take the work (called under the lock)."""
        if self._idle.acquire(timeout=0):
            return
        if len(self._threads) < self.workers:
            thread = threading.Thread(
                target=self._work, name=f"{self.name}-{next(self._counter)}", daemon=True
            )
            self._threads.add(thread)
            thread.start()

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            item = self._queue.get()
            if item is None:
                break
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                self._idle.release()
                continue
            with self._lock:
                self._running[future] = me
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)
            with self._lock:
                self._running.pop(future, None)
                if me in self._left:  # abandoned: another thread has taken its place
                    self._left.discard(me)
                    self._threads.discard(me)
                    log.warning(
                        "%s: a call abandoned earlier has returned at last; its thread ends",
                        self.name,
                    )
                    return
            self._idle.release()
        with self._lock:
            self._threads.discard(me)

    def abandon(self, future: Future[Any]) -> bool:
        """Leave the call of ``future`` running unwatched and let another thread take its
        place (up to :data:`MAX_ABANDONED`). False when it is not running (any more)."""
        with self._lock:
            thread = self._running.get(future)
            if thread is None or thread in self._left:
                return False
            self._left.add(thread)
            self.abandoned += 1
            if self.abandoned > MAX_ABANDONED:
                log.error(
                    "%s: %d calls abandoned: their threads are not replaced any more",
                    self.name,
                    self.abandoned,
                )
            else:
                self._threads.discard(thread)  # its place is free for another thread
                if self._queue.qsize() > 0 and not self._shutdown:
                    self._grow()
            return True

    def running(self) -> list[Future[Any]]:
        """The calls running now that were not abandoned."""
        with self._lock:
            return [f for f, t in self._running.items() if t not in self._left]

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more work; with ``cancel_futures``, cancel what has not started. With
        ``wait``, wait for the threads that were not abandoned (never for those)."""
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        item[0].cancel()
            threads = list(self._threads)
            for _ in threads:
                self._queue.put(None)
        if wait:
            for thread in threads:
                thread.join()
