"""``arroyo run``, ``bridge`` and ``demo`` (``tail`` is in :mod:`arroyo.cli.tail`)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from arroyo.brokers import open_listener, open_publisher, parse_url
from arroyo.cli import progress, topics
from arroyo.cli.common import fail
from arroyo.cli.supervise import Supervisor
from arroyo.errors import ArroyoError, ConfigError
from arroyo.runtime import Block, run_blocks
from arroyo.runtime.health import Health
from arroyo.runtime.lag import DEFAULT_INTERVAL
from arroyo.runtime.logs import WORKER_ENV, LogFormatName, configure

log = logging.getLogger("arroyo.cli")

MetricsHost = Annotated[
    str,
    typer.Option(
        help="Address the metrics server listens on (0.0.0.0: every interface, for a "
        "Prometheus on another machine; 127.0.0.1: this machine only)."
    ),
]

LagInterval = Annotated[
    float | None,
    typer.Option(
        min=0.001,
        help="Seconds between two refreshes of arroyo_lag_messages and arroyo_connected "
        "(for every block; default: each block's lag_interval, 5 s).",
    ),
]

Tracing = Annotated[
    bool,
    typer.Option(
        "--tracing",
        help="Trace every message with OpenTelemetry (needs the extra 'otel'; exporter set "
        "by OTEL_TRACES_EXPORTER and the other OTEL_* variables). Also: 'tracing: true' "
        "at the top of the YAML.",
    ),
]

LogFormat = Annotated[
    LogFormatName,
    typer.Option(
        help="text: one line per event for people; json: one JSON object per line (time, "
        "level, block, worker, logger, message) for a log collector.",
    ),
]


def _serve_metrics(host: str, port: int | None) -> Health:
    """Serve /metrics, /healthz and /readyz on ``host:port`` (nothing when ``port`` is
    None); the Health that the endpoints answer from."""
    health = Health()
    if port is not None:
        from arroyo.cli.endpoints import serve

        try:
            serve(host, port, health)
        except OSError as exc:
            raise fail(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
        log.info("metrics on http://%s:%d/metrics (health: /healthz, /readyz)", host, port)
    return health


async def _run_blocks(blocks: list[Block], health: Health) -> int:
    """run_blocks, with a status line when stdout is a terminal; ``health`` answers for
    the blocks meanwhile."""
    health.watch(blocks)
    if not progress.wanted():
        return await run_blocks(blocks)
    async with progress.shown(blocks):
        return await run_blocks(blocks)


def _enable_tracing() -> None:
    """Turn tracing on in this process (MissingDependencyError without the extra)."""
    from arroyo.runtime import tracing

    tracing.enable()
    if tracing.on:
        log.info("tracing: on (OpenTelemetry; W3C trace context in message headers)")


def run(
    config: Annotated[Path, typer.Argument(help="The pipeline's YAML file.", show_default=False)],
    block: Annotated[
        list[str] | None, typer.Option("--block", "-b", help="Run only this block (repeatable).")
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", "-w", min=1, help="Worker processes (consumer group).")
    ] = 1,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve Prometheus metrics (/metrics) and health (/healthz, /readyz) on this "
            "port (worker i uses port+i)."
        ),
    ] = None,
    metrics_host: MetricsHost = "0.0.0.0",
    lag_interval: LagInterval = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")] = False,
    log_format: LogFormat = "text",
    tracing: Tracing = False,
) -> None:
    """Run the blocks of a pipeline until they end or Ctrl-C / SIGTERM.

    The config is checked completely before anything starts, and Kafka topics marked
    `create:` are created. On a terminal, a status line shows counts, rates and queue
    depth.

    With --workers N, N worker processes run the same blocks; a consumer-group broker
    (Kafka, Redis Streams, RabbitMQ) shares the work between them, and a warning says
    when a Kafka topic has fewer partitions than N. A worker that dies is restarted
    (after 1 s, doubling up to 30 s while it keeps dying) and the others go on; every
    log line names its worker and pid. Ctrl-C / SIGTERM stops them all gracefully. Exit
    code 0: every worker ended cleanly and none was restarted; 1 otherwise.

    Examples:

      arroyo run connectors/kafka-workers.yaml

      arroyo run connectors/kafka-workers.yaml --workers 4 --metrics-port 9400
    """
    from arroyo.build import build
    from arroyo.config import load_config
    from arroyo.runtime.signals import catch_early_signals

    if workers == 1:
        catch_early_signals()
    level = logging.DEBUG if verbose else logging.INFO
    configure(level, role="supervisor" if workers > 1 else None, format=log_format)
    try:
        pipeline = load_config(config)
        built = build(pipeline, str(config), config.resolve().parent)
        if (tracing or pipeline.tracing) and workers == 1:
            _enable_tracing()
    except ArroyoError as exc:
        raise fail(exc) from None
    names = [b.block.name for b in built]
    unknown = sorted(set(block or ()) - set(names))
    if unknown:
        raise fail(f"{config}: no block named {', '.join(unknown)}; blocks: {', '.join(names)}")
    selected = [b for b in built if not block or b.block.name in block]
    if WORKER_ENV not in os.environ:  # a supervisor did this for its workers
        try:
            topics.create(selected, str(config))
        except ConfigError as exc:
            raise fail(exc) from None
        except ArroyoError as exc:
            raise fail(exc, 1) from None
    if workers > 1:
        topics.warn_idle_workers(selected, str(config), workers)
        raise typer.Exit(
            _supervise(
                config,
                block,
                workers,
                metrics_host,
                metrics_port,
                verbose,
                log_format,
                lag_interval,
                tracing,
            )
        )
    if lag_interval is not None:
        for one in selected:
            one.block.lag_interval = lag_interval
    worker = int(os.environ.get(WORKER_ENV, "0"))
    health = _serve_metrics(metrics_host, None if metrics_port is None else metrics_port + worker)
    raise typer.Exit(asyncio.run(_run_blocks([b.block for b in selected], health)))


def _supervise(
    config: Path,
    blocks: list[str] | None,
    workers: int,
    metrics_host: str,
    metrics_port: int | None,
    verbose: bool,
    log_format: LogFormatName = "text",
    lag_interval: float | None = None,
    tracing: bool = False,
) -> int:
    """Run ``workers`` worker processes of ``arroyo run config`` (see
    :mod:`arroyo.cli.supervise`); the exit code."""
    command = [sys.executable, "-m", "arroyo", "run", str(config)]
    for name in blocks or ():
        command += ["--block", name]
    if metrics_port is not None:
        command += ["--metrics-port", str(metrics_port), "--metrics-host", metrics_host]
    if lag_interval is not None:
        command += ["--lag-interval", repr(lag_interval)]
    if verbose:
        command.append("--verbose")
    command += ["--log-format", log_format]
    if tracing:
        command.append("--tracing")
    return Supervisor(lambda index: command, workers).run()


def bridge(
    source: Annotated[str, typer.Argument(help="Where to read (a broker URL).")],
    destination: Annotated[str, typer.Argument(help="Where to publish (a broker URL).")],
    dead_letter: Annotated[
        str | None, typer.Option(help="Where messages that cannot be read go (a URL).")
    ] = None,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many messages.")] = None,
    queue_size: Annotated[
        int, typer.Option(min=1, help="Messages held between receipt and acknowledgement.")
    ] = 1000,
    max_bytes: Annotated[
        int, typer.Option(min=1, help="Bytes held between receipt and acknowledgement.")
    ] = 64 << 20,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics, /healthz and /readyz.")
    ] = None,
    metrics_host: MetricsHost = "0.0.0.0",
    lag_interval: LagInterval = None,
    log_format: LogFormat = "text",
    tracing: Tracing = False,
    check: Annotated[
        Literal["full", "lazy"],
        typer.Option(
            help="full: decode and check each message on arrival; lazy: check its framing "
            "and identity, forward the rest as it came (Arroyo's own messages only).",
        ),
    ] = "full",
) -> None:
    """Forward every message from SOURCE to DESTINATION, with acknowledgements.

    On a terminal, a status line shows counts, rates and queue depth.

    Examples:

      arroyo bridge 'zmq+pull://127.0.0.1:5555?parser=json-frame' kafka://127.0.0.1:9092/frames

      arroyo bridge kafka://127.0.0.1:9092/frames?group=archive file:///data/frames.avro
    """
    configure(format=log_format)
    try:
        from arroyo.codec import Codec
        from arroyo.parsers import make_parser, needs_arroyo_messages
        from arroyo.runtime.parser import AvroParser

        url = parse_url(source)
        name = url.query.pop("parser", "arroyo")
        if check == "lazy":
            needs_arroyo_messages(name)
        parser = AvroParser(Codec(lazy=True)) if check == "lazy" else make_parser(name)
        listener = open_listener(url, parser=parser)
        publisher = open_publisher(destination)
        dead = open_publisher(dead_letter) if dead_letter else None
        if tracing:
            _enable_tracing()
    except ArroyoError as exc:
        raise fail(exc) from None
    block = Block(
        listener,
        None,
        [publisher],
        name="bridge",
        dead_letter=dead,
        max_messages=count,
        queue_size=queue_size,
        max_bytes=max_bytes,
        lag_interval=lag_interval if lag_interval is not None else DEFAULT_INTERVAL,
    )
    health = _serve_metrics(metrics_host, metrics_port)
    raise typer.Exit(asyncio.run(_run_blocks([block], health)))


def demo(
    frames: Annotated[int, typer.Option(min=1, help="Frames in the simulated run.")] = 1000,
    shape: Annotated[str, typer.Option(help="Frame shape, ROWSxCOLS.")] = "512x512",
    output: Annotated[
        Path | None, typer.Option(help="Avro file for the results (default: a temporary file).")
    ] = None,
    view: Annotated[
        bool,
        typer.Option(
            "--view",
            help="Watch the run live in the browser (at 25 frames/s; the page stays up "
            "until Ctrl-C). Needs the view extra.",
        ),
    ] = False,
    view_port: Annotated[int, typer.Option(help="Port of the page, with --view.")] = 8080,
) -> None:
    """The main job on an in-process broker (no broker needed).

    A simulated detector emits a run (Start, frames as numpy Events, Stop); an operator
    integrates each frame; the results are archived to an Avro file, which is then read
    back and checked. Shows live progress and ends with a summary.

    Examples: arroyo demo --frames 2000 --shape 256x256

      arroyo demo --view  (then open http://127.0.0.1:8080/)
    """
    from arroyo.demo import run_demo

    configure(logging.WARNING)
    try:
        rows, cols = (int(n) for n in shape.lower().split("x"))
    except ValueError:
        raise fail(f"--shape must look like 512x512, got {shape!r}") from None
    try:
        ok = asyncio.run(
            run_demo(frames, (rows, cols), output, ("127.0.0.1", view_port) if view else None)
        )
    except ArroyoError as exc:
        raise fail(exc) from None
    raise typer.Exit(0 if ok else 1)


def register(app: typer.Typer) -> None:
    """Add the commands of this module to ``app``."""
    for command in (run, bridge, demo):
        app.command()(command)
