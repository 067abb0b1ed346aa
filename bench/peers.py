"""The same Kafka -> Kafka work (at-least-once, 1 KiB) with FastStream and quixstreams.

They are installed from PyPI in a virtual environment of the benchmark's own
(``bench/.venv-peers``, made on first use; not Arroyo's dependencies), and their
variants run there; this module imports neither Arroyo nor them at the top.

- FastStream (aiokafka), as its documentation writes it: a subscriber in a consumer
  group with ``AckPolicy.ACK`` (the offset is committed after the handler returned),
  the handler publishing the value with ``broker.publish`` (which waits for the
  broker's acknowledgement); idempotent producer.
- FastStream, batched: ``batch=True`` subscriber (up to 1000 records); the handler
  publishes each with ``no_confirm=True`` and awaits all the acknowledgements together
  (``publish_batch`` is limited to one producer batch, 16 KiB); ``AckPolicy.ACK``.
- quixstreams: ``app.dataframe(topic).to_topic(out)`` with bytes (de)serializers,
  ``processing_guarantee="at-least-once"`` (its default: outputs flushed and offsets
  committed at each checkpoint), run with ``app.run(count=N)``; its time ends when
  ``run`` returns (after the final checkpoint), and it reports no latencies.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, Measurement, Row, Timing, best_of, run_variant, unique

KAFKA = os.environ.get("ARROYO_KAFKA", "127.0.0.1:9092")
VENV = ROOT / "bench" / ".venv-peers"
PACKAGES = ["faststream[kafka]==0.7.8", "quixstreams==3.28.1"]
"""Pinned, so that a figure can be reproduced."""


def python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> str | None:
    """Create the peers' environment if it is missing; None when ready, else why not."""
    marker = VENV / "installed.txt"
    wanted = "\n".join(PACKAGES)
    if marker.exists() and marker.read_text() == wanted and python().exists():
        return None
    print(f"installing {', '.join(PACKAGES)} into {VENV} (once)...", file=sys.stderr)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(VENV)],
        [
            str(python()),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *PACKAGES,
        ],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False, timeout=600)
        if done.returncode != 0:
            tail = " | ".join(done.stderr.strip().splitlines()[-3:])
            return f"could not install the peers ({' '.join(step[:4])}...): {tail}"[:400]
    marker.write_text(wanted)
    return None


def versions() -> dict[str, str]:
    """Installed versions of the peers (and of their Kafka clients)."""
    code = (
        "import importlib.metadata as m\n"
        "for p in ('faststream', 'aiokafka', 'quixstreams', 'confluent-kafka'):\n"
        "    print(p, m.version(p))"
    )
    done = subprocess.run(
        [str(python()), "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    return dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)


# -- variants (in the peers' environment) ------------------------------------------------


async def faststream(src: str, dst: str, group: str, count: int, batch: bool) -> Timing:
    """FastStream: per message, or batched (see the module docstring)."""
    kafka: Any = importlib.import_module("faststream.kafka")
    ack: Any = importlib.import_module("faststream").AckPolicy.ACK
    broker = kafka.KafkaBroker(KAFKA, enable_idempotence=True)
    latencies: list[float] = []
    began: list[float] = []
    end = [0.0]
    done = asyncio.Event()

    def note(taken: float, n: int) -> None:
        end[0] = time.monotonic()
        latencies.extend([end[0] - taken] * n)
        if len(latencies) >= count:
            done.set()

    subscribe = broker.subscriber(
        src,
        group_id=group,
        auto_offset_reset="earliest",
        ack_policy=ack,
        **({"batch": True, "max_records": 1000} if batch else {}),
    )
    if batch:

        @subscribe  # type: ignore[untyped-decorator]
        async def handle_batch(bodies: list[bytes]) -> None:
            taken = time.monotonic()
            began.append(taken)
            sent = [await broker.publish(body, dst, no_confirm=True) for body in bodies]
            await asyncio.gather(*sent)  # every acknowledgement
            note(taken, len(bodies))

    else:

        @subscribe  # type: ignore[untyped-decorator]
        async def handle(body: bytes) -> None:
            taken = time.monotonic()
            began.append(taken)
            await broker.publish(body, dst)
            note(taken, 1)

    async with broker:
        await broker.start()
        await done.wait()
    return Timing(len(latencies), end[0] - min(began), latencies)


def quixstreams(src: str, dst: str, group: str, count: int) -> Timing:
    """quixstreams: a passthrough StreamingDataFrame (see the module docstring)."""
    quix: Any = importlib.import_module("quixstreams")
    app = quix.Application(
        broker_address=KAFKA,
        consumer_group=group,
        auto_offset_reset="earliest",
        processing_guarantee="at-least-once",
    )
    source = app.topic(src, value_deserializer="bytes", key_deserializer="bytes")
    sink = app.topic(dst, value_serializer="bytes", key_serializer="bytes")
    began: list[float] = []

    def first(value: Any) -> None:
        if not began:
            began.append(time.monotonic())

    frame = app.dataframe(source)
    frame = frame.update(first)
    frame.to_topic(sink)
    app.run(count=count, collect=False)
    return Timing(count, time.monotonic() - began[0], [])


# -- the rows (parent process) -----------------------------------------------------------

COUNTS = {  # (quick, full) messages per run, at 1 KiB
    "faststream": (2_000, 5_000),
    "faststream-batch": (20_000, 100_000),
    "quixstreams": (20_000, 100_000),
}


def _peer(name: str, src: str, count: int, made: list[str]) -> Measurement:
    from bench.kafka_kafka import create_topics, messages_in

    dst = unique(f"peer-{name}")
    create_topics(dst)
    made.append(dst)
    args: dict[str, Any] = {"src": src, "dst": dst, "group": unique("group"), "count": count}
    function = "quixstreams" if name == "quixstreams" else "faststream"
    if function == "faststream":
        args["batch"] = name == "faststream-batch"
    result = run_variant("peers", function, args, 1 << 10, python=str(python()), timeout=180)
    if not result.error and messages_in(dst) < count:
        result.error = f"{dst} holds fewer than {count} messages"
    return result


def run(quick: bool, repeat: int) -> list[Row]:
    """Arroyo's at-least-once Block against each peer, on the same pre-loaded topic."""
    from bench.kafka_kafka import delete_topics, measure_arroyo, preload

    problem = ensure_venv()
    if problem is not None:
        failed = Measurement.failed(1 << 10, problem)
        return [Row("Kafka -> Kafka vs peers", "1 KiB", failed, failed, "peers", note=problem)]
    found = versions()
    rows = []
    for name, counts in COUNTS.items():
        count = counts[0] if quick else counts[1]
        src = unique("peer-src")
        preload(src, count, 1 << 10)
        made = [src]
        try:
            ours, theirs = best_of(
                [
                    functools.partial(measure_arroyo, src, count),
                    functools.partial(_peer, name, src, count, made),
                ],
                repeat,
            )
        finally:
            delete_topics(*made)
        package = "quixstreams" if name == "quixstreams" else "faststream"
        label = f"{name.replace('faststream', 'FastStream')} {found.get(package, '?')}"
        rows.append(
            Row(
                "Kafka -> Kafka, at-least-once, vs peers",
                "1 KiB",
                ours,
                theirs,
                label,
                target=1.0,
            )
        )
    return rows
