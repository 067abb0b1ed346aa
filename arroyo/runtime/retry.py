"""How failures are retried: attempts and exponential backoff (tenacity does the work)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_never,
    wait_exponential_jitter,
)

from arroyo.errors import PermanentError

if TYPE_CHECKING:
    from arroyo.runtime.logs import Throttle
    from arroyo.runtime.metrics import BlockStats

T = TypeVar("T")
log = logging.getLogger("arroyo.block")


def note_retry(
    stats: BlockStats, throttle: Throttle, step: str, attempt: int, error: BaseException
) -> None:
    """Count a retry of ``step`` (parse, operator, publish, dead-letter) in ``stats`` and
    log it, throttled per step."""
    stats.retried += 1
    stats.retried_steps[step] += 1
    throttle(
        log, logging.WARNING, step, "%s failed (attempt %d), retrying: %r", step, attempt, error
    )


def _retryable(error: BaseException) -> bool:
    """Exceptions are retried, but not PermanentErrors, nor cancellation (a BaseException)."""
    return isinstance(error, Exception) and not isinstance(error, PermanentError)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``attempts`` in all (None: until it works), waiting ``initial`` seconds after the
    first failure, doubling up to ``maximum``, with jitter. PermanentErrors are not retried."""

    attempts: int | None = 3
    initial: float = 0.1
    maximum: float = 5.0

    async def call(
        self,
        func: Callable[[], Awaitable[T]],
        on_retry: Callable[[int, BaseException], None] | None = None,
        failed: Exception | None = None,
        retry_if: Callable[[BaseException], bool] | None = None,
    ) -> T:
        """Call ``func`` until it succeeds or the attempts are used up (then re-raise).

        ``on_retry(attempt, error)`` is called before each wait. The first call is made
        directly (the common case costs nothing); tenacity takes over after a failure.
        ``failed``: the first attempt was made already (by the caller) and raised this.
        ``retry_if``: retry only the exceptions it accepts (others are raised at once).
        """
        if failed is None:
            try:
                return await func()
            except Exception as exc:
                failed = exc

        def retryable(error: BaseException) -> bool:
            return _retryable(error) and (retry_if is None or retry_if(error))

        if not retryable(failed) or self.attempts == 1:
            raise failed
        first: BaseException | None = failed

        def before_sleep(state: RetryCallState) -> None:
            if on_retry is not None and state.outcome is not None:
                error = state.outcome.exception()
                if error is not None:
                    on_retry(state.attempt_number, error)

        retrying = AsyncRetrying(
            stop=stop_never if self.attempts is None else stop_after_attempt(self.attempts),
            wait=wait_exponential_jitter(
                multiplier=self.initial, max=self.maximum, jitter=self.initial
            ),
            retry=retry_if_exception(retryable),
            before_sleep=before_sleep,
            reraise=True,
        )

        async def attempt() -> T:
            nonlocal first
            if first is not None:  # replay the direct call's failure as tenacity's attempt 1
                error, first = first, None
                raise error
            return await func()

        return await retrying(attempt)
