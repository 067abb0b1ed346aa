"""Lag and connection gauges of a Block, refreshed on a timer off the hot path.

Every ``interval`` seconds while a Block runs, a task of the Block asks its listener
:meth:`~arroyo.runtime.listener.Listener.lag` (how many messages of its source wait to be
consumed, per part of the source) and notes whether its listener and every publisher
(its dead letter too) say they are ``connected``. Prometheus scrapes read that snapshot
(:func:`families`), never the brokers: a scrape costs no broker call, and a slow or
failing broker answer delays only the next refresh, never a message.

- ``arroyo_lag_messages{block, <source labels>}``: the last answer of the listener
  (Kafka ``topic``/``partition``, Redis Streams ``stream``/``group``, RabbitMQ
  ``queue``). Absent while unknown: before the first answer, when the listener cannot
  tell (the default), when asking failed or did not answer within the refresh, and
  once the Block stopped.
- ``arroyo_connected{block, role, connector}``: 1 or 0 per listener (``role="listener"``)
  and publisher (``publisher``, ``dead_letter``); 0 before the Block runs and after.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric

from arroyo.runtime.logs import Throttle

if TYPE_CHECKING:
    from arroyo.runtime.listener import Listener
    from arroyo.runtime.publisher import Publisher

__all__ = ["DEFAULT_INTERVAL", "LagWatch", "Source", "families", "source"]

log = logging.getLogger("arroyo.lag")

DEFAULT_INTERVAL = 5.0
"""Seconds between two refreshes of a Block's lag and connection states."""

Source = tuple[tuple[str, str], ...]
"""One part of a listener's source as Prometheus labels: (name, value) pairs sorted by
name, e.g. ``(("partition", "0"), ("topic", "frames"))``. Made by :func:`source`."""


def source(**labels: object) -> Source:
    """The :data:`Source` with these labels (values as text): ``source(queue="q")``."""
    return tuple(sorted((name, str(value)) for name, value in labels.items()))


class LagWatch:
    """The lag and connection states of one Block, refreshed by :meth:`run` on the event
    loop and read by :func:`families` from any thread (it only reads the last snapshot,
    which each refresh replaces whole)."""

    def __init__(
        self,
        block: str,
        listener: Listener,
        publishers: Callable[[], Sequence[tuple[str, Publisher]]],
        interval: float = DEFAULT_INTERVAL,
        failing: Callable[[], Collection[object]] = tuple,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"lag_interval must be positive, got {interval}")
        self.block = block
        self.listener = listener
        self.interval = interval
        self._publishers = publishers
        self._failing = failing
        """The publishers whose publishes fail and are being retried now: not connected,
        whatever their client says (the Block's readiness knows them)."""
        self.lag: dict[Source, int] | None = None
        """The listener's last answer (None: unknown)."""
        self.connected: dict[tuple[str, str], bool] = self._states(False)
        """(role, connector name) -> connected, as of the last refresh."""
        self._refreshed = False
        self._failures = Throttle(60.0)

    def _states(self, running: bool) -> dict[tuple[str, str], bool]:
        parts: list[tuple[str, Listener | Publisher]] = [
            ("listener", self.listener),
            *self._publishers(),
        ]
        failing = self._failing() if running else ()
        return {
            (role, part.name): running and bool(part.connected) and part not in failing
            for role, part in parts
        }

    async def refresh(self) -> None:
        """Note the connection states, then ask the listener for its lag (giving up after
        the interval, or 5 s if longer): unknown when it fails or does not answer. A
        part that went down or came back since the last refresh is logged (once)."""
        states = self._states(True)
        if self._refreshed:
            for (role, name), up in states.items():
                if self.connected.get((role, name), up) != up:
                    if up:
                        log.info("block %s: %s %s is connected again", self.block, role, name)
                    else:
                        log.warning("block %s: %s %s is not connected", self.block, role, name)
        self.connected, self._refreshed = states, True
        try:
            async with asyncio.timeout(max(self.interval, 5.0)):
                lag = await self.listener.lag()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broker that does not answer: unknown, not a failure
            self.lag = None
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            where = f"block {self.block}: cannot read the lag of {self.listener.name}"
            self._failures(log, logging.WARNING, why, "%s: %s", where, why)
            return
        self.lag = dict(lag) if lag is not None else None

    async def run(self) -> None:
        """Refresh now and every ``interval`` seconds until cancelled; then mark every
        connection down and the lag unknown (the Block stopped)."""
        try:
            while True:
                await self.refresh()
                await asyncio.sleep(self.interval)
        finally:
            self.lag = None
            self.connected = self._states(False)
            self._failures.flush()


def families(watches: Iterable[LagWatch]) -> Iterator[Metric]:
    """``arroyo_lag_messages`` and ``arroyo_connected`` of ``watches`` (their last
    snapshots). Blocks of the same name (one that ended, and its successor) give one
    sample per label set: the largest lag, connected when any is."""
    lags: dict[tuple[str, Source], int] = {}
    states: dict[tuple[str, str, str], bool] = {}
    for watch in watches:
        for labels, value in (watch.lag or {}).items():
            key = (watch.block, labels)
            lags[key] = max(value, lags.get(key, value))
        for (role, name), up in watch.connected.items():
            states[watch.block, role, name] = up or states.get((watch.block, role, name), False)
    lag = Metric(
        "arroyo_lag_messages",
        "Messages of the source not consumed yet by the block's group (as of the last refresh)",
        "gauge",
    )
    for (block, labels), value in lags.items():
        lag.add_sample("arroyo_lag_messages", {"block": block, **dict(labels)}, value)
    yield lag
    connected = GaugeMetricFamily(
        "arroyo_connected",
        "1 while a listener or publisher is connected to its broker, else 0",
        labels=["block", "role", "connector"],
    )
    for (block, role, name), up in states.items():
        connected.add_metric([block, role, name], 1 if up else 0)
    yield connected
