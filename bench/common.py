"""What every benchmark reports, and how it is printed."""

from __future__ import annotations

import json
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Measurement:
    """One variant (``arroyo`` or ``raw``) of one path at one payload size."""

    messages: int
    seconds: float
    payload_bytes: int
    latencies: list[float] = field(default_factory=list, repr=False)
    peak_rss_mb: float = 0.0

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.messages * self.payload_bytes / self.seconds / 1e6 if self.seconds else 0.0

    def percentile(self, p: float) -> float | None:
        """Latency percentile in milliseconds (None when not measured)."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1e3


@dataclass
class Row:
    """A path at a payload size: Arroyo against the raw client (or a reference)."""

    path: str
    payload: str
    arroyo: Measurement
    raw: Measurement
    raw_label: str = "raw"
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.arroyo.msgs_per_s / self.raw.msgs_per_s if self.raw.msgs_per_s else 0.0

    def as_dict(self) -> dict[str, object]:
        def one(m: Measurement) -> dict[str, object]:
            return {
                "messages": m.messages,
                "seconds": round(m.seconds, 4),
                "msgs_per_s": round(m.msgs_per_s, 1),
                "mb_per_s": round(m.mb_per_s, 2),
                "p50_ms": m.percentile(50),
                "p99_ms": m.percentile(99),
                "peak_rss_mb": round(m.peak_rss_mb, 1),
            }

        return {
            "path": self.path,
            "payload": self.payload,
            "arroyo": one(self.arroyo),
            self.raw_label: one(self.raw),
            "ratio": round(self.ratio, 3),
            "note": self.note,
        }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(func: Callable[[], object], repeat: int, number: int) -> float:
    """Best-of-``repeat`` seconds for ``number`` calls of ``func``."""
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        for _ in range(number):
            func()
        best = min(best, time.perf_counter() - began)
    return best


def size_label(size: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    head = (
        "| path | payload | Arroyo msg/s | raw msg/s | Arroyo / raw | Arroyo MB/s | "
        "p50 / p99 ms (Arroyo) | p50 / p99 ms (raw) | peak RSS MB (Arroyo / raw) |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        a, b = r.arroyo, r.raw
        lines.append(
            f"| {r.path} | {r.payload} | {a.msgs_per_s:,.0f} | {b.msgs_per_s:,.0f} "
            f"({r.raw_label}) | **{r.ratio:.2f}** | {a.mb_per_s:,.1f} | "
            f"{_ms(a.percentile(50))} / {_ms(a.percentile(99))} | "
            f"{_ms(b.percentile(50))} / {_ms(b.percentile(99))} | "
            f"{a.peak_rss_mb:.0f} / {b.peak_rss_mb:.0f} |"
        )
    return "\n".join(lines)


def machine() -> str:
    """One line about the machine the figures come from."""
    import os

    cpus = os.cpu_count()
    return f"{platform.node()}: {platform.system()} {platform.machine()}, {cpus} CPUs, " + (
        f"Python {platform.python_version()}"
    )


def save(rows: list[Row], path: Path) -> None:
    """Write the rows as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": []}
    data["rows"] = [r.as_dict() for r in rows]
    path.write_text(json.dumps(data, indent=2))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


__all__ = ["Measurement", "Row", "asdict", "median", "peak_rss_mb", "save", "table", "timed"]
