"""What every benchmark reports, how a variant runs in a process of its own, and the table.

Only the standard library is imported here: the peers' variants (FastStream,
quixstreams) import this module inside their own virtual environment, without Arroyo.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
"""The repository (the working directory of every variant's process)."""

RESULT_MARK = "BENCH-RESULT "
"""The line a variant's process prints its result on."""


@dataclass
class Timing:
    """What a variant measured in its own process: messages moved, seconds from the first
    input handed to it to the last output confirmed, and per-message latencies (s)."""

    messages: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    note: str = ""


@dataclass
class Measurement:
    """One variant (``arroyo``, ``raw`` or a peer) of one path at one payload size."""

    messages: int
    seconds: float
    payload_bytes: int
    p50_ms: float | None = None
    p99_ms: float | None = None
    peak_rss_mb: float = 0.0
    error: str = ""
    note: str = ""

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        """Payload megabytes (10^6 bytes) per second."""
        return self.msgs_per_s * self.payload_bytes / 1e6

    @classmethod
    def failed(cls, payload_bytes: int, error: str) -> Measurement:
        return cls(0, 0.0, payload_bytes, error=error)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "messages": self.messages,
            "seconds": round(self.seconds, 4),
            "msgs_per_s": round(self.msgs_per_s, 1),
            "mb_per_s": round(self.mb_per_s, 2),
            "p50_ms": None if self.p50_ms is None else round(self.p50_ms, 3),
            "p99_ms": None if self.p99_ms is None else round(self.p99_ms, 3),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
        }
        if self.error:
            out["error"] = self.error
        if self.note:
            out["note"] = self.note
        return out


def percentile_ms(latencies: list[float], p: float) -> float | None:
    """The ``p``-th percentile of latencies in seconds, in milliseconds (None if empty)."""
    if not latencies:
        return None
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1e3


@dataclass
class Row:
    """A path at a payload size: Arroyo against the raw client (or a peer, or a reference)."""

    path: str
    payload: str
    arroyo: Measurement
    raw: Measurement
    raw_label: str = "raw"
    note: str = ""
    target: float | None = None
    """The Arroyo / raw ratio this row should reach (None: no target)."""

    @property
    def ratio(self) -> float:
        return self.arroyo.msgs_per_s / self.raw.msgs_per_s if self.raw.msgs_per_s else 0.0

    @property
    def verdict(self) -> str:
        if self.target is None or not self.arroyo.messages or not self.raw.messages:
            return ""
        return "met" if self.ratio >= self.target else "MISSED"

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "payload": self.payload,
            "arroyo": self.arroyo.as_dict(),
            "against": self.raw_label,
            "other": self.raw.as_dict(),
            "ratio": round(self.ratio, 3),
            "target": self.target,
            "verdict": self.verdict,
            "note": self.note,
        }


# -- running a variant in a process of its own -------------------------------------------


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (2^20 bytes).

    Linux's ``VmHWM`` (the high-water mark of this program's own memory) where there is
    one: ``getrusage``'s ``ru_maxrss`` also counts the parent's memory at fork time."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_variant(
    module: str,
    function: str,
    args: dict[str, Any],
    payload_bytes: int,
    *,
    python: str | None = None,
    timeout: float = 180.0,
) -> Measurement:
    """Run ``bench.<module>.<function>(**args)`` in a new process (``python -m bench.child``)
    and return what it measured, with that process's peak RSS. A failure (exit code,
    timeout) is returned as a failed Measurement, with the end of its stderr."""
    command = [python or sys.executable, "-m", "bench.child", module, function, json.dumps(args)]
    try:
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return Measurement.failed(payload_bytes, f"timed out after {timeout:.0f} s")
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            data = json.loads(line[len(RESULT_MARK) :])
            return Measurement(
                messages=data["messages"],
                seconds=data["seconds"],
                payload_bytes=payload_bytes,
                p50_ms=data["p50_ms"],
                p99_ms=data["p99_ms"],
                peak_rss_mb=data["peak_rss_mb"],
                note=data.get("note", ""),
            )
    tail = " | ".join(done.stderr.strip().splitlines()[-3:])
    return Measurement.failed(payload_bytes, f"exit {done.returncode}: {tail}"[:400])


def best_of(
    runs: list[Callable[[], Measurement]], repeat: int, first: int = 0
) -> list[Measurement]:
    """Run every variant ``repeat`` times, alternating which goes first (so neither always
    has the warmer broker); for each variant, return its median run by throughput."""
    results: list[list[Measurement]] = [[] for _ in runs]
    order = list(range(len(runs)))
    for r in range(repeat):
        turn = order if (r + first) % 2 == 0 else order[::-1]
        for i in turn:
            results[i].append(runs[i]())
    out = []
    for found in results:
        good = sorted((m for m in found if not m.error), key=lambda m: m.msgs_per_s)
        out.append(good[len(good) // 2] if good else found[-1])
    return out


def lazy_row(path: str, payload: str, lazy: Measurement, raw: Measurement) -> Row:
    """The ``check: lazy`` row of ``path``: Arroyo reading only the framing and the
    identity, against the same raw loop as its full-check row."""
    note = "framing and identity checked; the rest forwarded as it came"
    return Row(f"{path}, check: lazy", payload, lazy, raw, note=note)


def unique(tag: str) -> str:
    """A topic/stream/queue name no other run uses."""
    return f"bench-{tag}-{uuid.uuid4().hex[:8]}"


def size_label(size: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"


def timed(func: Callable[[], object], repeat: int, number: int) -> float:
    """Best-of-``repeat`` seconds for ``number`` calls of ``func``."""
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        for _ in range(number):
            func()
        best = min(best, time.perf_counter() - began)
    return best


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


# -- the table ---------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _rate(m: Measurement) -> str:
    return "failed" if m.error else f"{m.msgs_per_s:,.0f}"


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    head = (
        "| path | payload | Arroyo msg/s | other msg/s | Arroyo / other | target | "
        "Arroyo MB/s | other MB/s | p50 / p99 ms Arroyo | p50 / p99 ms other | "
        "peak RSS MB Arroyo / other |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        a, b = r.arroyo, r.raw
        target = "" if r.target is None else f">= {r.target:g} {r.verdict}"
        lines.append(
            f"| {r.path} | {r.payload} | {_rate(a)} | {_rate(b)} ({r.raw_label}) | "
            f"**{r.ratio:.2f}** | {target} | {a.mb_per_s:,.1f} | {b.mb_per_s:,.1f} | "
            f"{_ms(a.p50_ms)} / {_ms(a.p99_ms)} | {_ms(b.p50_ms)} / {_ms(b.p99_ms)} | "
            f"{a.peak_rss_mb:.0f} / {b.peak_rss_mb:.0f} |"
        )
    return "\n".join(lines)


def problems(rows: list[Row]) -> list[str]:
    """Failures and notes worth printing under the table."""
    out = []
    for r in rows:
        for who, m in (("Arroyo", r.arroyo), (r.raw_label, r.raw)):
            if m.error:
                out.append(f"{r.path} {r.payload} ({who}): FAILED: {m.error}")
            if m.note:
                out.append(f"{r.path} {r.payload} ({who}): {m.note}")
        if r.note:
            out.append(f"{r.path} {r.payload}: {r.note}")
    return out


# -- the machine -------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return 0.0


def machine(brokers: dict[str, str] | None = None) -> dict[str, object]:
    """The machine the figures come from (and the broker versions, when known)."""
    return {
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "ram_gib": round(_ram_gib(), 1),
        "python": platform.python_version(),
        "brokers": brokers or {},
    }


def machine_line(info: dict[str, object]) -> str:
    brokers = info.get("brokers") or {}
    assert isinstance(brokers, dict)
    versions = ", ".join(f"{k} {v}" for k, v in brokers.items())
    return (
        f"{info['cpus']} x {info['cpu_model']}, {info['ram_gib']} GiB RAM, {info['os']}, "
        f"Python {info['python']}" + (f"; {versions}" if versions else "")
    )


def save(rows: list[Row], path: Path, info: dict[str, object], extra: dict[str, object]) -> None:
    """Write the rows (and the machine, and how the run was made) as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "machine": info,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        **extra,
        "rows": [r.as_dict() for r in rows],
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
