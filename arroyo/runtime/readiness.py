"""What one Block knows of its own readiness (read by :mod:`arroyo.runtime.health`, which
answers ``/readyz``)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from arroyo.runtime.ordering import Sender


class Readiness:
    """What one Block knows of itself and of its destinations: kept by the Block (its
    ``state``, ``stopping``), its settler and its dead letters (the publishers whose
    publish is being retried); read by :func:`arroyo.runtime.health.not_ready`. Used on
    the event loop only."""

    __slots__ = ("_retries", "_why", "state", "stopping")

    def __init__(self) -> None:
        self.state: Literal["starting", "running", "stopped"] = "starting"
        """``running`` from the moment the listener is connected and every publisher
        started until the Block ends (``stopped``)."""
        self.stopping = False
        """True once a stop was asked (the Block takes no more input)."""
        self._retries: Counter[Sender] = Counter()
        self._why: dict[Sender, str] = {}

    def retrying(self, publisher: Sender, error: BaseException) -> None:
        """A publish to ``publisher`` failed with ``error`` and is being retried: the
        Block is not ready until :meth:`retried` (whether the retry worked or gave up:
        the next publish tells again)."""
        self._retries[publisher] += 1
        self._why[publisher] = str(error) or type(error).__name__

    def retried(self, publisher: Sender) -> None:
        """The retry :meth:`retrying` announced has ended."""
        self._retries[publisher] -= 1
        if self._retries[publisher] <= 0:
            del self._retries[publisher]
            self._why.pop(publisher, None)

    def failing(self) -> dict[Sender, str]:
        """The publishers being retried now, with the last error of each."""
        return dict(self._why)
