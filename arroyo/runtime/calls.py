"""Calls of ``operator.process``: an optional timeout, and calls that hang are named.

A call that takes longer than the operator's ``timeout`` fails (:class:`OperatorTimeout`)
and is retried, then dead-lettered, like any failure; it is cancelled (a
:class:`~arroyo.runtime.operator.BlockingOperator` thread is abandoned). Without a
timeout nothing stops a call, but one running longer than ``hung_after`` seconds is
logged as hung, and so are those still running when the grace period of a stop ends.
An operator that raises ``asyncio.CancelledError`` itself has failed
(:class:`OperatorCancelled`): only the Block cancels its own work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from arroyo.errors import ArroyoError
from arroyo.message import Message
from arroyo.runtime.logs import Throttle
from arroyo.runtime.tasks import cancelling, retrieve

if TYPE_CHECKING:
    from arroyo.runtime.operator import Operator, Output

log = logging.getLogger("arroyo.block")
T = TypeVar("T")

_NAMED = 10
"""At most this many abandoned calls are named one by one at the end of a grace period."""


class OperatorTimeout(ArroyoError, TimeoutError):
    """The operator did not return within its timeout (retried, then dead-lettered)."""


class OperatorCancelled(ArroyoError):
    """The operator raised asyncio.CancelledError though nothing cancelled it."""


def describe(message: Message) -> str:
    """``event 1f3a... (stream 'scan-1', seq 42)``: a message in a log line."""
    return f"{message.kind} {message.id} (stream {message.stream!r}, seq {message.seq})"


class OperatorCalls:
    """Runs ``operator.process`` and keeps which calls are running, since when."""

    def __init__(
        self,
        operator: Operator,
        timeout: float | None,
        hung_after: float,
        throttle: Throttle | None = None,
    ) -> None:
        if timeout is not None and timeout <= 0:
            raise ValueError(f"the operator's timeout must be positive, got {timeout}")
        self.operator = operator
        self.timeout = timeout
        self.hung_after = hung_after
        self.throttle = throttle or Throttle()
        self._running: dict[int, tuple[Message, float]] = {}
        self._reported: set[int] = set()

    async def call(self, message: Message) -> Output:
        """``operator.process(message)``, within the timeout when there is one.

        Raises what the operator raised, OperatorTimeout, or OperatorCancelled; a
        CancelledError only when the calling task itself is being cancelled.
        """
        key = id(message)
        self._running[key] = (message, time.monotonic())
        try:
            if self.timeout is None:
                return await self.operator.process(message)
            return await self._within(self.operator.process(message), describe(message))
        except asyncio.CancelledError:
            if cancelling():
                raise
            raise _cancelled(describe(message)) from None
        finally:
            del self._running[key]
            self._reported.discard(key)

    async def call_batch(self, messages: Sequence[Message]) -> list[Output]:
        """``operator.process_batch(messages)``, as :meth:`call` (the timeout is for the
        whole batch; logs name the batch by its first message)."""
        first = messages[0]
        key = id(first)
        self._running[key] = (first, time.monotonic())
        what = f"a batch of {len(messages)} messages from {describe(first)}"
        try:
            if self.timeout is None:
                return await self.operator.process_batch(messages)
            return await self._within(self.operator.process_batch(messages), what)
        except asyncio.CancelledError:
            if cancelling():
                raise
            raise _cancelled(what) from None
        finally:
            del self._running[key]
            self._reported.discard(key)

    async def _within(self, coroutine: Coroutine[Any, Any, T], what: str) -> T:
        timeout = self.timeout
        call = asyncio.ensure_future(coroutine)
        try:
            done, _ = await asyncio.wait((call,), timeout=timeout)
        except asyncio.CancelledError:
            call.cancel()
            raise
        if not done:
            call.cancel()  # not awaited: an operator that ignores it cannot hold us
            call.add_done_callback(retrieve)
            raise OperatorTimeout(
                f"the operator did not return within its timeout of {timeout:g} s on {what}"
            )
        return call.result()

    def running(self) -> list[tuple[Message, float]]:
        """The calls running now: each message and for how many seconds."""
        now = time.monotonic()
        return [(message, now - began) for message, began in self._running.values()]

    async def watch(self) -> None:
        """Log, once each, the calls that have been running for longer than hung_after
        (runs until cancelled)."""
        interval = max(0.05, min(self.hung_after / 4, 5.0))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for key, (message, began) in list(self._running.items()):
                if now - began >= self.hung_after and key not in self._reported:
                    self._reported.add(key)
                    self.throttle(
                        log,
                        logging.WARNING,
                        "hung",
                        "the operator has been running for %.0f s on %s: hung? (nothing "
                        "stops it; set the operator's timeout to fail such calls)",
                        now - began,
                        describe(message),
                    )

    def report_abandoned(self) -> int:
        """Log each call still running (the grace period is over: it is abandoned, its
        message left unacknowledged); how many there were."""
        running = sorted(self.running(), key=lambda call: -call[1])
        for message, seconds in running[:_NAMED]:
            log.warning(
                "abandoned the operator's call on %s, running for %.1f s (hung?); the "
                "message is left unacknowledged",
                describe(message),
                seconds,
            )
        if len(running) > _NAMED:
            log.warning("abandoned %d more calls of the operator", len(running) - _NAMED)
        return len(running)


def _cancelled(what: str) -> OperatorCancelled:
    """The operator raised CancelledError on ``what`` though nothing cancelled it."""
    return OperatorCancelled(
        f"the operator raised CancelledError on {what} (a failure: nothing cancelled it)"
    )
