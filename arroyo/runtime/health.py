"""Liveness and readiness: what ``/healthz`` and ``/readyz`` answer.

A Block is **ready** while it runs (its listener connected, its publishers started, no
stop asked), its listener and every publisher (its dead letter too) say they are
``connected`` (:attr:`arroyo.runtime.listener.Listener.connected`,
:attr:`arroyo.runtime.publisher.Publisher.connected`), and no publish to one of them is
being retried after a failure: a lost connection of any connector reaches the runtime
as failed publishes, so a destination that went away makes its Block not ready at its
next publish, whatever the broker, and ready again once a publish gets through.

A process is **alive** while its event loop answers. :class:`Health` is read from the
threads of an HTTP server: it asks the loop, so a loop that is blocked counts as dead,
and every answer is computed on the loop, where the Blocks live.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from arroyo.runtime.block import Block

__all__ = ["ANSWER_WITHIN", "Health", "not_ready"]

ANSWER_WITHIN = 2.0
"""Seconds the event loop has to answer a probe before the process counts as not alive
(and not ready)."""


def not_ready(block: Block) -> list[str]:
    """Why ``block`` is not ready, one line per reason naming the block (empty: ready)."""
    readiness = block.readiness
    where = f"block {block.name}"
    if readiness.state != "running":
        return [f"{where}: {'not started yet' if readiness.state == 'starting' else 'stopped'}"]
    if readiness.stopping:
        return [f"{where}: stopping"]
    reasons = []
    if not block.listener.connected:
        reasons.append(f"{where}: listener {block.listener.name} is not connected")
    failing = readiness.failing()
    for publisher in [*block.publishers, *filter(None, [block.dead_letter])]:
        if publisher in failing:
            why = failing[publisher]
            reasons.append(f"{where}: publishing to {publisher.name} fails, retrying: {why}")
        elif not publisher.connected:
            reasons.append(f"{where}: publisher {publisher.name} is not connected")
    return reasons


class Health:
    """Liveness and readiness of the Blocks this process runs, asked from any thread.

    :meth:`watch` (on the event loop, when the Blocks start) says which loop and which
    Blocks; before that the process is alive (starting) but not ready.
    """

    def __init__(self, answer_within: float = ANSWER_WITHIN) -> None:
        self.answer_within = answer_within
        self._loop: asyncio.AbstractEventLoop | None = None
        self._blocks: Sequence[Block] = ()

    def watch(self, blocks: Iterable[Block]) -> None:
        """Answer for ``blocks``, run by the event loop this is called on."""
        self._blocks = list(blocks)
        self._loop = asyncio.get_running_loop()

    def alive(self) -> tuple[bool, str]:
        """Whether the event loop answers within ``answer_within`` seconds, and a line
        saying so (True while the Blocks are not started yet)."""
        if self._loop is None:
            return True, "starting"
        answered, _ = self._ask(lambda: [])
        if not answered:
            return False, self._silent()
        return True, "ok"

    def ready(self) -> tuple[bool, list[str]]:
        """Whether every Block is ready (:func:`not_ready`), and why not: one line per
        reason."""
        if self._loop is None:
            return False, ["starting: the blocks are not running yet"]
        answered, reasons = self._ask(lambda: [r for b in self._blocks for r in not_ready(b)])
        if not answered:
            return False, [self._silent()]
        return not reasons, reasons

    def _silent(self) -> str:
        return f"the event loop did not answer within {self.answer_within:g} s"

    def _ask(self, question: Callable[[], list[str]]) -> tuple[bool, list[str]]:
        """Run ``question`` on the loop; (False, []) when the loop does not answer in time
        (blocked, stopped or closed)."""
        loop = self._loop
        assert loop is not None
        answer: concurrent.futures.Future[list[str]] = concurrent.futures.Future()

        def ask() -> None:
            try:
                answer.set_result(question())
            except BaseException as exc:
                answer.set_exception(exc)

        try:
            loop.call_soon_threadsafe(ask)
            return True, answer.result(self.answer_within)
        except (RuntimeError, concurrent.futures.TimeoutError):  # closed, or no answer
            return False, []
