"""Processing one received message: parse it, run the operator on each message (with its
retries), check what it returned; or make its dead letter (never raises, but when
cancelled)."""

from __future__ import annotations

import asyncio
import functools
import logging
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

log = logging.getLogger("arroyo.block")


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
        attempts = [1]
        try:
            messages, first = await self._prepare(received)
            return await self._run(received, messages, first, attempts)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return DeadLetter.from_exception(
                exc, received.data, received.source, attempts[0], self.name
            )

    async def process_batch(self, batch: list[Received]) -> list[Outcome]:
        """The outcome of each received message of ``batch``, in order, with one call of
        the operator's ``process_batch`` for all the messages they hold (never raises).

        A message that cannot be parsed (or was delivered too often) gets its dead letter
        alone. When the call fails, or does not return one output per message, each
        received message is run again alone, as :meth:`process` does after parsing (with
        its retries), so that only what fails alone is dead-lettered.
        """
        outcomes: list[Outcome | None] = [None] * len(batch)
        prepared: list[tuple[list[Message], Message | None] | None] = [None] * len(batch)
        messages: list[Message] = []
        for index, received in enumerate(batch):
            try:
                try:
                    prepared[index] = parsed = self._prepare_now(received)
                except RegistryError:
                    prepared[index] = parsed = await self._prepare(received)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                outcomes[index] = DeadLetter.from_exception(
                    exc, received.data, received.source, 1, self.name
                )
            else:
                messages.extend(parsed[0])
        produced = await self._operate_batch(messages) if messages else []
        at = 0
        for index, received in enumerate(batch):
            parts = prepared[index]
            if parts is None:
                continue
            mine, first = parts
            if produced is None:  # the batch failed: this one alone, with its retries
                attempts = [1]
                try:
                    outcomes[index] = await self._run(received, mine, first, attempts)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    outcomes[index] = DeadLetter.from_exception(
                        exc, received.data, received.source, attempts[0], self.name
                    )
                continue
            outputs_of = produced[at : at + len(mine)]
            at += len(mine)
            outcomes[index] = self._outcome(received, mine, first, outputs_of)
        return outcomes  # type: ignore[return-value]  # every slot is set by now

    async def _prepare(self, received: Received) -> tuple[list[Message], Message | None]:
        """:meth:`_prepare_now`, retrying while the schema registry cannot be reached."""
        try:
            return self._prepare_now(received)
        except RegistryError as exc:
            # Bad bytes are a DecodeError (permanent, not retried); an unreachable
            # schema registry is retried until it is back, like a publisher.
            parsed = await self.publish_retry.call(
                lambda: self._parse(received),
                lambda n, e: self._retried("parse", n, e),
                failed=exc,
            )
            return self._counted(parsed if isinstance(parsed, list) else [parsed])

    def _prepare_now(self, received: Received) -> tuple[list[Message], Message | None]:
        """The messages of ``received`` (parsed now unless the listener did), counted by
        the frame accounting, and the first as parsed (the frame accounting may add a
        summary to a Stop: a new message). Raises for a message delivered too often, and
        what parsing raised (RegistryError: nothing was counted, try again)."""
        if self.max_deliveries is not None and received.deliveries > self.max_deliveries:
            raise _TooManyDeliveries(
                f"delivered {received.deliveries} times (more than max_deliveries="
                f"{self.max_deliveries}): it keeps failing or crashing workers"
            )
        messages = received.messages
        if messages is None:
            parsed = self._parse_now(received)
            messages = parsed if isinstance(parsed, list) else [parsed]
        return self._counted(messages)

    def _counted(self, messages: list[Message]) -> tuple[list[Message], Message | None]:
        first = messages[0] if messages else None
        if self.frames is not None:
            messages = self.frames.observe_all(messages)
        return messages, first

    async def _run(
        self,
        received: Received,
        messages: list[Message],
        first: Message | None,
        attempts: list[int],
    ) -> Outcome:
        """Run the operator on each of ``messages`` (those of ``received``), with its
        retries; ``attempts[0]`` says how many calls the last message took. Raises what
        still failed."""
        results: list[Message] = []
        for message in messages:
            attempts[0] = 1
            failed: Exception | None = None
            produced: list[Message] | None = None
            if self.slots is None:  # concurrency 1: the first attempt, directly
                try:
                    produced = await self._operate(message)
                except Exception as exc:
                    failed = exc
            if produced is None:

                def retried(n: int, error: BaseException) -> None:
                    attempts[0] = n + 1
                    self._retried("operator", n, error)

                produced = await self.retry.call(
                    functools.partial(self._operate_in_slot, message), retried, failed
                )
            forward = self._forward(received, messages, first, message, produced)
            if forward is not None:
                return forward
            results.extend(produced)
        return results

    def _outcome(
        self,
        received: Received,
        messages: list[Message],
        first: Message | None,
        produced: list[list[Message]],
    ) -> Outcome:
        """The outcome of ``received`` from the batch call's outputs for its messages."""
        if len(messages) == 1:
            forward = self._forward(received, messages, first, messages[0], produced[0])
            if forward is not None:
                return forward
        return [out for outs in produced for out in outs]

    def _forward(
        self,
        received: Received,
        messages: list[Message],
        first: Message | None,
        message: Message,
        produced: list[Message],
    ) -> Forward | None:
        """``received`` to forward as the bytes it came as, when its one message came
        back unchanged from an operator that forwards its input; else None."""
        data = received.data
        if (
            self.calls.operator.forwards_input
            and len(messages) == 1
            and len(produced) == 1
            and produced[0] is message
            and message is first  # not a Stop that gained a frame summary
            and isinstance(data, bytes)
        ):
            return Forward(message, data)
        return None

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

    async def _operate_batch(self, messages: list[Message]) -> list[list[Message]] | None:
        """One call of the operator's ``process_batch``, timed; the outputs of each
        message (checked), or None when the call failed (logged: each message is then
        processed alone)."""
        began = time.perf_counter()
        try:
            produced = await self.calls.call_batch(messages)
            if not isinstance(produced, list) or len(produced) != len(messages):
                got = len(produced) if isinstance(produced, list) else type(produced).__name__
                raise InvalidOutput(
                    f"process_batch returned {got} outputs for {len(messages)} messages; "
                    "expected a list with one output per message"
                )
            kinds = (Start, Event, Stop)  # a message as it is: no list, no check, no call
            return [[value] if isinstance(value, kinds) else outputs(value) for value in produced]
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.throttle(
                log,
                logging.WARNING,
                f"batch:{type(exc).__name__}",
                "process_batch failed on %d messages (%s): processing them one by one",
                len(messages),
                f"{type(exc).__name__}: {exc}".splitlines()[0],
            )
            return None
        finally:
            elapsed = time.perf_counter() - began
            self.metrics.processing.observe_many(elapsed / len(messages), len(messages))

    async def _operate_in_slot(self, message: Message) -> list[Message]:
        """:meth:`_operate` within the concurrency limit."""
        if self.slots is None:
            return await self._operate(message)
        async with self.slots:
            return await self._operate(message)

    async def _parse(self, received: Received) -> Message | list[Message]:
        """:meth:`_parse_now`, as a coroutine (for the retries)."""
        return self._parse_now(received)

    def _parse_now(self, received: Received) -> Message | list[Message]:
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
