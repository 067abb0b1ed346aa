"""Processing one received message: parse it, run the operator on each message (with its
retries), check what it returned; or make its dead letter (never raises, but when
cancelled)."""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from typing import Any

from arroyo.errors import ArroyoError, DecodeError, PermanentError, RegistryError
from arroyo.message import Event, Message, Start, Stop
from arroyo.runtime import tracing
from arroyo.runtime.calls import OperatorCalls
from arroyo.runtime.frames import FrameAccounting
from arroyo.runtime.listener import Listener, Received
from arroyo.runtime.logs import Throttle
from arroyo.runtime.metrics import BlockMetrics, BlockStats
from arroyo.runtime.publisher import DeadLetter
from arroyo.runtime.retry import RetryPolicy, note_retry


class InvalidOutput(PermanentError, TypeError):
    """The operator returned something other than a message, a list of them, or None."""


def outputs(value: Any) -> list[Message]:
    """What the operator returned, as a list of messages; InvalidOutput for anything else."""
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


@dataclass(frozen=True, slots=True)
class Forward:
    """The outcome of a message the operator returned unchanged (a Passthrough): the
    message itself, and the bytes it arrived as, which a publisher of the same framing
    sends as they are instead of encoding it again."""

    message: Message
    wire: bytes


Outcome = list[Message] | Forward | DeadLetter
"""What processing one received message gives: its outputs, itself to forward, or its
dead letter."""


class _TooManyDeliveries(PermanentError):
    """The broker delivered this message more often than max_deliveries."""


class Processor:
    """Turns each received message of a Block into its outputs, or its dead letter.

    ``slots`` (with concurrency above 1) bounds the operator calls running at once; with
    none, the first attempt is made directly (no retry machinery on the common path).
    """

    def __init__(
        self,
        name: str,
        listener: Listener,
        calls: OperatorCalls,
        retry: RetryPolicy,
        publish_retry: RetryPolicy,
        max_deliveries: int | None,
        slots: asyncio.Semaphore | None,
        stats: BlockStats,
        metrics: BlockMetrics,
        throttle: Throttle,
        frames: FrameAccounting | None = None,
    ) -> None:
        self.name = name
        self.listener = listener
        self.calls = calls
        self.retry = retry
        self.publish_retry = publish_retry
        self.max_deliveries = max_deliveries
        self.slots = slots
        self.stats = stats
        self.metrics = metrics
        self.throttle = throttle
        self.frames = frames
        """Counts the frames of each run as parsed (and adds the summary to its Stop)."""
        if tracing.on:  # decided once: tracing off costs nothing per message
            self.process = self._traced  # type: ignore[method-assign]

    async def process(self, received: Received) -> Outcome:
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
            first = messages[0] if messages else None
            if self.frames is not None:
                messages = self.frames.observe_all(messages)
            results: list[Message] = []
            for message in messages:
                attempts = 1
                failed: Exception | None = None
                produced: list[Message] | None = None
                if self.slots is None:  # concurrency 1: the first attempt, directly
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
                    self.calls.operator.forwards_input
                    and len(messages) == 1
                    and len(produced) == 1
                    and produced[0] is message
                    and message is first  # not a Stop that gained a frame summary
                    and isinstance(received.data, bytes)
                ):
                    return Forward(message, received.data)
                results.extend(produced)
            return results
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return DeadLetter.from_exception(
                exc, received.data, received.source, attempts, self.name
            )

    async def _traced(self, received: Received) -> Outcome:
        """:meth:`process` within its ``receive`` and ``process`` spans (tracing on)."""
        spans = tracing.Processing(received, self.name, self.listener)
        with spans:
            outcome = await Processor.process(self, received)
            if isinstance(outcome, DeadLetter):
                spans.outcome([], outcome.reason)
            else:
                spans.outcome([outcome.message] if isinstance(outcome, Forward) else outcome, None)
        return outcome

    async def _operate(self, message: Message) -> list[Message]:
        """One call of the operator, timed; its outputs as a list (checked)."""
        began = time.perf_counter()
        try:
            return outputs(await self.calls.call(message))
        finally:
            self.metrics.processing.observe(time.perf_counter() - began)

    async def _operate_in_slot(self, message: Message) -> list[Message]:
        """:meth:`_operate` within the concurrency limit."""
        if self.slots is None:
            return await self._operate(message)
        async with self.slots:
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
        note_retry(self.stats, self.throttle, step, attempt, error)
