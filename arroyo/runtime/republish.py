"""Publishing again: an output whose send failed is published once more, as
``publish_retry`` says, before the message goes to the dead letter.

The send that failed counts as attempt 1 (a :class:`~arroyo.runtime.ordering.NotSent`
one was never written: the attempts start with it). Meanwhile the publisher's later sends
are held back (:class:`~arroyo.runtime.ordering.OrderedSends`), so the destination still
receives outputs in input order, and the Block is not ready (``/readyz``) from the
first failure until the publish returns. A publisher that works again after more than
the failed send logs it once, with the attempts and the time it took.
"""

from __future__ import annotations

import asyncio
import logging
import time

from arroyo.errors import PermanentError
from arroyo.message import Message
from arroyo.runtime.calls import describe
from arroyo.runtime.listener import Received
from arroyo.runtime.logs import Throttle
from arroyo.runtime.metrics import BlockStats
from arroyo.runtime.ordering import NotSent, OrderedSends
from arroyo.runtime.publisher import DeadLetter
from arroyo.runtime.readiness import Readiness
from arroyo.runtime.retry import RetryPolicy, note_retry

log = logging.getLogger("arroyo.block")


class Republisher:
    """Publishes the failed outputs of one Block again (see the module docstring)."""

    def __init__(
        self,
        name: str,
        retry: RetryPolicy,
        stats: BlockStats,
        throttle: Throttle,
        readiness: Readiness,
    ) -> None:
        self.name = name
        self.retry = retry
        self.stats = stats
        self.throttle = throttle
        self.readiness = readiness

    async def publish(
        self, received: Received, gate: OrderedSends, message: Message, first: Exception
    ) -> DeadLetter | None:
        """Publish ``message`` again after its send failed with ``first``, holding later
        sends to that publisher back meanwhile; the dead letter when it still fails."""
        publisher = gate.publisher
        try:
            if isinstance(first, PermanentError):
                raise first
            gate.hold()
            marked = False  # the Block is not ready while a failed publish is retried
            tries, since = 0, time.monotonic()

            def failed(attempt: int, error: BaseException) -> None:
                nonlocal marked, tries
                tries = attempt
                note_retry(self.stats, self.throttle, "publish", attempt, error)
                if not marked:
                    self.readiness.retrying(publisher, error)
                    marked = True

            try:
                # The send that failed was attempt 1; a NotSent one was never tried.
                tried = None if isinstance(first, NotSent) else first
                await self.retry.call(lambda: publisher.publish(message), failed, failed=tried)
                if tries > 1:  # more than the send that failed: it was out for a while
                    self.throttle(
                        log,
                        logging.INFO,
                        f"back:{publisher.name}",
                        "publisher %s works again: published after %d failed attempts (%.1f s)",
                        publisher.name,
                        tries,
                        time.monotonic() - since,
                    )
            finally:
                if marked:
                    self.readiness.retried(publisher)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.throttle(
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
