"""Where a Block's bad messages go: the dead-letter destination, or a counted drop.

Dead letters are sent as soon as they are known, without waiting for the confirmation
of the one before (so many are in flight together and a destination that pipelines
takes them in batches); the settler waits for each confirmation in input order before
acknowledging the source message. A failed dead letter is retried like any publish
(``publish_retry``). When it still fails, above all when the destination refuses for
good (a Redis key of the wrong type, no permission), the Block stops with
:class:`DeadLetterFailed`: a message is never acknowledged without being delivered or
dead-lettered, and nothing after it is acknowledged either.
Logs of dead letters and drops are throttled per kind of error.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Literal

from arroyo.errors import ArroyoError, PermanentError
from arroyo.runtime.logs import Throttle
from arroyo.runtime.publisher import DeadLetter, Publisher
from arroyo.runtime.retry import RetryPolicy, note_retry

if TYPE_CHECKING:
    from arroyo.runtime.metrics import BlockStats
    from arroyo.runtime.readiness import Readiness

log = logging.getLogger("arroyo.block")


class DeadLetterFailed(ArroyoError):
    """The dead-letter destination did not take a dead letter: the Block stops."""


class DeadLetters:
    """Sends the dead letters of one Block (or drops them, counted, by policy)."""

    def __init__(
        self,
        destination: Publisher | None,
        on_invalid: Literal["dead-letter", "drop"],
        retry: RetryPolicy,
        stats: BlockStats,
        throttle: Throttle,
        readiness: Readiness | None = None,
    ) -> None:
        self.destination = destination
        self.on_invalid = on_invalid
        self.retry = retry
        self.stats = stats
        self.throttle = throttle
        self.readiness = readiness

    def send(self, letter: DeadLetter) -> asyncio.Future[None] | None:
        """Start sending ``letter`` now; None when it is dropped instead (no destination,
        or an invalid message under ``on_invalid: drop``), which is counted and logged."""
        source = ", ".join(f"{k}={v}" for k, v in letter.source.items())
        destination = self.destination
        if letter.invalid and self.on_invalid == "drop":
            self.stats.dropped += 1
            self.throttle(
                log,
                logging.WARNING,
                f"drop:{letter.error}",
                "dropped an invalid message from %s: %s",
                source,
                letter.reason,
            )
            return None
        if destination is None:
            self.stats.dropped += 1
            self.throttle(
                log,
                logging.ERROR,
                f"drop:{letter.error}",
                "dropped a bad message (no dead-letter destination configured) from %s: %s: %s",
                source,
                letter.error,
                letter.reason,
            )
            return None
        self.throttle(
            log,
            logging.WARNING,
            f"dead-letter:{letter.error}",
            "dead letter from %s: %s: %s",
            source,
            letter.error,
            letter.reason,
        )
        return asyncio.ensure_future(destination.publish_dead_letter(letter))

    async def confirm(self, letter: DeadLetter, sent: asyncio.Future[None] | None) -> None:
        """Wait until the destination confirmed ``letter`` (sent by :meth:`send`), retrying
        a failure. Raises DeadLetterFailed when it still fails."""
        if sent is None:
            return
        destination = self.destination
        assert destination is not None
        try:
            await sent
        except asyncio.CancelledError:
            raise
        except Exception as first:
            try:
                if isinstance(first, PermanentError):
                    raise first
                if self.readiness is not None:
                    self.readiness.retrying(destination, first)
                try:  # the send that failed was attempt 1
                    await self.retry.call(
                        lambda: destination.publish_dead_letter(letter),
                        self._retried,
                        failed=first,
                    )
                finally:
                    if self.readiness is not None:
                        self.readiness.retried(destination)
            except Exception as exc:
                source = ", ".join(f"{k}={v}" for k, v in letter.source.items())
                raise DeadLetterFailed(
                    f"the dead-letter destination {destination.name} did not take the dead "
                    f"letter from {source} ({letter.error}: {letter.reason}): {exc}; "
                    "stopping: this message and those after it are left unacknowledged"
                ) from exc
        self.stats.dead_lettered += 1

    def _retried(self, attempt: int, error: BaseException) -> None:
        note_retry(self.stats, self.throttle, "dead-letter", attempt, error)
