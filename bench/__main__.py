"""``python -m bench [--quick] [--only PATH,...] [--repeat N] [--json FILE]``

Measures every path through Arroyo and through the shortest correct loop written with
the raw client, in one run on the same brokers, each variant in a process of its own
(so its peak RSS is its own), alternating which goes first. Prints a Markdown table and
writes JSON (default ``bench/results/latest.json``).

Figures: msg/s and payload MB/s from the first input message the variant took to the
last output the broker confirmed; p50/p99 latency of each message from the moment the
variant took it from the client library to the broker's confirmation of its output
(for exactly-once: to the commit of its transaction), under full load; peak RSS of the
variant's process (Linux VmHWM).

The brokers are those of ``compose/brokers.sh up`` (``ARROYO_KAFKA``, ``ARROYO_REDIS``,
``ARROYO_AMQP``). The peers (FastStream, quixstreams, sentry-arroyo) are installed on
first use in ``bench/.venv-peers`` and ``bench/.venv-sentry``; a peer that cannot be
installed makes its rows say so. The Kafka rows' limit, Kafka's Java producer, runs from
the jars ``compose/brokers.sh up kafka`` fetched (and needs ``java``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import Row, machine, machine_line, problems, save, table

PATHS = ["codec", "zmq_kafka", "kafka_kafka", "kafka_workers", "redis_streams", "rabbitmq", "peers"]
"""Benchmark modules, in the order they run; each has ``run(quick, repeat) -> list[Row]``."""
OPT_IN = ["stream2_kafka", "view"]
"""Benchmark modules that run only when named with ``--only`` (they need extras)."""


LEGEND = """
msg/s, MB/s (payload, 10^6 bytes): from the first input message a variant took to the
last output the broker confirmed. Latency: per message, from the moment the variant took
it from the client library to the broker's confirmation of its output (exactly-once: the
commit of its transaction), with the whole pre-loaded backlog in flight (so it includes
queueing). Peak RSS: the variant's own process. Arroyo / other: msg/s ratio."""


def broker_versions() -> dict[str, str]:
    """The versions of the brokers the figures come from (best effort)."""
    found: dict[str, str] = {}
    brokers = Path(os.environ.get("ARROYO_BROKERS_DIR", Path.home() / ".cache/arroyo/brokers"))
    with contextlib.suppress(OSError, ValueError):
        pid = int((brokers / "kafka" / "kafka.pid").read_text().split()[0])
        command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        match = re.search(r"kafka[-_](?:2\.\d+-)?(\d+\.\d+\.\d+)", command)
        if match:
            found["Kafka"] = match.group(1) + " (KRaft, native)"
    with contextlib.suppress(Exception):
        import redis

        from bench.redis_streams import HOST, PORT

        client = redis.Redis(host=HOST, port=int(PORT))
        found["Redis"] = str(client.info("server")["redis_version"])
        client.close()

    async def rabbitmq() -> str:
        import aio_pika

        from bench.rabbitmq import URL

        connection = await aio_pika.connect(URL)
        try:
            assert connection.transport is not None
            version = connection.transport.connection.server_properties.get("version", b"?")
            return version.decode() if isinstance(version, bytes) else str(version)
        finally:
            await connection.close()

    with contextlib.suppress(Exception):
        found["RabbitMQ"] = asyncio.run(rabbitmq())
    return found


def client_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("arroyo", "confluent-kafka", "pyzmq", "redis", "hiredis", "aio-pika"):
        with contextlib.suppress(PackageNotFoundError):
            out[package] = version(package)
    with contextlib.suppress(Exception):
        import confluent_kafka

        out["librdkafka"] = confluent_kafka.libversion()[0]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="short runs (under 3 minutes)")
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(PATHS + OPT_IN)}")
    parser.add_argument(
        "--repeat", type=int, help="runs per variant, median kept (default: 1 quick, 3 full)"
    )
    parser.add_argument("--json", type=Path, default=Path("bench/results/latest.json"))
    args = parser.parse_args(argv)
    selected = args.only.split(",") if args.only else PATHS
    unknown = sorted(set(selected) - set(PATHS + OPT_IN))
    if unknown:
        parser.error(f"unknown path(s) {unknown}; known: {PATHS + OPT_IN}")
    repeat = args.repeat or (1 if args.quick else 3)
    info = machine(broker_versions())
    rows: list[Row] = []
    timings: dict[str, float] = {}
    began = time.monotonic()
    for name in selected:
        print(f"running {name}...", file=sys.stderr, flush=True)
        started = time.monotonic()
        module: Any = importlib.import_module(f"bench.{name}")
        found: list[Row] = module.run(args.quick, repeat)
        rows += found
        timings[name] = round(time.monotonic() - started, 1)
        print(table(found), file=sys.stderr, flush=True)
    seconds = time.monotonic() - began
    kind = "quick" if args.quick else "full"
    print(f"\n{machine_line(info)}")
    print(f"{kind} run, {repeat} run(s) per variant, {seconds:.0f} s\n")
    print(table(rows))
    print(LEGEND)
    notes = problems(rows)
    if notes:
        print("\n" + "\n".join(f"- {n}" for n in notes))
    extra: dict[str, object] = {
        "run": kind,
        "repeat": repeat,
        "seconds": round(seconds, 1),
        "seconds_per_path": timings,
        "clients": client_versions(),
        "command": "python -m bench" + (" --quick" if args.quick else ""),
    }
    save(rows, args.json, info, extra)
    print(f"\nJSON: {args.json}")
    return 1 if any(r.arroyo.error or r.raw.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
