"""What a ZeroMQ listener can tell about what it lost: gaps in ``seq`` and runs that
ended without their Stop.

ZeroMQ does not redeliver, and PUB/SUB drops by design (a subscriber that falls behind or
joins late misses messages, and nothing tells it). :class:`SeqGaps` wraps the listener's
parser and counts what can be detected from the messages themselves, in the Prometheus
counters ``arroyo_zmq_gaps{block}`` and ``arroyo_zmq_runs_without_stop{block}``, with a
(throttled) warning each.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from prometheus_client import Counter

from arroyo.brokers.zmq.settings import ZmqListenerSettings
from arroyo.message import Message, Start, Stop
from arroyo.runtime.listener import Raw
from arroyo.runtime.logs import Throttle, current_block
from arroyo.runtime.parser import Parser

log = logging.getLogger("arroyo.brokers.zmq")

GAPS = Counter(
    "arroyo_zmq_gaps",
    "Messages missing from a ZeroMQ stream (gaps in seq per stream: PUB/SUB drops)",
    ["block"],
)
RUNS_WITHOUT_STOP = Counter(
    "arroyo_zmq_runs_without_stop",
    "Runs of a ZeroMQ stream that ended without their Stop (lost, or the sender stopped): "
    "a new Start of the stream came first, or nothing of it for run_timeout seconds",
    ["block"],
)

_DEFAULTS = ZmqListenerSettings()


class SeqGaps:
    """A parser that reports gaps: it parses with ``parser`` and watches ``seq`` per stream.

    A Start begins a stream; afterwards a message whose ``seq`` is beyond the next
    expected one means messages were lost: they are added to ``arroyo_zmq_gaps`` and
    logged. A stream first seen without its Start (a late join) is not a gap. Increases
    of the wrapped parser's ``missing`` attribute (if it has one) count too. A run that
    ends without its Stop (a new Start of its stream, or nothing of it for
    ``run_timeout`` seconds, see :meth:`expire`) is added to
    ``arroyo_zmq_runs_without_stop`` and logged.
    """

    def __init__(
        self,
        parser: Parser,
        where: str,
        streams: int = 10_000,
        run_timeout: float = _DEFAULTS.run_timeout,
    ) -> None:
        self.parser = parser
        self.where = where
        self.run_timeout = run_timeout
        self.missing = 0
        """Messages known to be lost so far."""
        self.without_stop = 0
        """Runs that ended without their Stop so far."""
        self._streams = streams
        self._next: OrderedDict[str, tuple[int, float]] = OrderedDict()
        """Per open run: the next seq expected, and when a message of it last came."""
        self._parser_missing = int(getattr(parser, "missing", 0) or 0)
        self._throttle = Throttle()

    @property
    def wrapped(self) -> Parser:
        """The parser this one parses with (whose frame counter the Block uses)."""
        return self.parser

    def parse(self, data: Raw) -> Message | list[Message]:
        """Parse with the wrapped parser, then note gaps. Raises what the parser raises."""
        result = self.parser.parse(data)
        for message in result if isinstance(result, list) else (result,):
            self._observe(message)
        reported = getattr(self.parser, "missing", None)
        if isinstance(reported, int) and reported > self._parser_missing:
            self._lost(reported - self._parser_missing, None)
            self._parser_missing = reported
        return result

    def _observe(self, message: Message) -> None:
        stream, seq = message.stream, message.seq
        known = self._next.get(stream)
        expected = None if known is None else known[0]
        if expected is not None and isinstance(message, Start):
            self._unstopped(stream, expected - 1, "its stream started again")
        elif expected is not None and seq > expected:
            self._lost(seq - expected, f"stream {stream!r}: seq {seq} follows {expected - 1}")
        if isinstance(message, Stop):
            self._next.pop(stream, None)
            return
        if expected is None or seq >= expected or isinstance(message, Start):
            self._next[stream] = (seq + 1, time.monotonic())
            self._next.move_to_end(stream)
            if len(self._next) > self._streams:
                self._next.popitem(last=False)

    def expire(self, now: float | None = None) -> None:
        """Count the open runs with nothing for ``run_timeout`` seconds (before ``now``, a
        ``time.monotonic()`` value) as ended without their Stop (the listener calls this
        about every second)."""
        now = time.monotonic() if now is None else now
        for stream, (expected, last) in list(self._next.items()):
            if now - last >= self.run_timeout:
                del self._next[stream]
                self._unstopped(stream, expected - 1, f"nothing of it for {self.run_timeout:g} s")

    def flush_log(self) -> None:
        """Log the count of the warnings left out (throttled) since the last one."""
        self._throttle.flush()

    def open_runs(self) -> list[str]:
        """The streams of the runs seen without their Stop yet."""
        return list(self._next)

    def _lost(self, count: int, detail: str | None) -> None:
        self.missing += count
        GAPS.labels(current_block.get()).inc(count)
        self._throttle(
            log,
            logging.WARNING,
            "lost",
            "%s: %d message(s) lost%s (ZeroMQ does not redeliver)",
            self.where,
            count,
            f" ({detail})" if detail else "",
        )

    def _unstopped(self, stream: str, last: int, why: str) -> None:
        self.without_stop += 1
        RUNS_WITHOUT_STOP.labels(current_block.get()).inc()
        self._throttle(
            log,
            logging.WARNING,
            "unstopped",
            "%s: run %r ended without its Stop (%s; its last message had seq %d): the Stop "
            "was lost, or the sender stopped sending",
            self.where,
            stream,
            why,
            last,
        )
