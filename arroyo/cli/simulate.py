"""``arroyo simulate``: a simulated detector on a ZeroMQ socket."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer

from arroyo.cli.common import fail
from arroyo.errors import ArroyoError
from arroyo.runtime.logs import configure


def simulate(
    url: Annotated[
        str,
        typer.Argument(
            help="Where to send: zmq+push://HOST:PORT or zmq+pub://HOST:PORT ('*' binds).",
            show_default=False,
        ),
    ],
    frames: Annotated[int, typer.Option(min=0, help="Frames per run.")] = 100,
    shape: Annotated[str, typer.Option(help="Frame shape, e.g. 512x512 (or 1024).")] = "512x512",
    dtype: Annotated[
        str, typer.Option(help="numpy dtype with byte order if needed: uint16, '>u2', '<f4'.")
    ] = "uint16",
    rate: Annotated[
        float, typer.Option(min=0, help="Frames per second; 0 = as fast as possible.")
    ] = 0.0,
    format: Annotated[
        str, typer.Option("--format", help="json-frame, msgpack-array, arroyo or stream2.")
    ] = "json-frame",
    runs: Annotated[int, typer.Option(min=1, help="Runs (Start, frames, Stop) to send.")] = 1,
    stream: Annotated[
        str | None, typer.Option(help="Run id (STREAM-R for run R when --runs > 1).")
    ] = None,
    compression: Annotated[
        str | None,
        typer.Option(help="stream2 images: bslz4 (default), lz4 or none (raw)."),
    ] = None,
    drop_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Drop each frame with this probability.")
    ] = 0.0,
    duplicate_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Send each frame twice with this probability.")
    ] = 0.0,
    reorder_rate: Annotated[
        float,
        typer.Option(min=0, max=1, help="Swap each frame with the next with this probability."),
    ] = 0.0,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the fault generator (repeatable runs).")
    ] = None,
) -> None:
    """Send simulated detector runs: Start, N frames, Stop, on a ZeroMQ socket.

    zmq+push:// waits for a receiver and blocks when it falls behind (lossless);
    zmq+pub:// waits for a first subscriber, then drops what subscribers cannot take.

    Examples:

      arroyo simulate 'zmq+push://*:5555' --frames 1000 --shape 512x512 --rate 100

      arroyo simulate 'zmq+pub://127.0.0.1:5556?bind=true' --format msgpack-array --dtype '>u2'

      arroyo simulate 'zmq+push://*:31001' --format stream2 --compression bslz4

      arroyo simulate 'zmq+push://*:5555' --frames 1000 --drop-rate 0.01 --seed 7
    """
    configure(logging.WARNING)
    try:
        dims = tuple(int(n) for n in shape.lower().split("x"))
        if not dims or any(n < 0 for n in dims):
            raise ValueError(shape)
    except ValueError:
        raise fail(f"--shape must look like 512x512, got {shape!r}") from None
    try:
        from arroyo.simulate import Faults
        from arroyo.simulate import simulate as run_simulation

        faults = Faults(drop_rate, duplicate_rate, reorder_rate, seed)

        report = asyncio.run(
            run_simulation(
                url,
                frames=frames,
                shape=dims,
                dtype=dtype,
                rate=rate,
                format=format,
                runs=runs,
                stream=stream,
                compression=compression,
                faults=faults,
            )
        )
    except ArroyoError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    mib = report.frame_bytes / (1 << 20)
    speed = mib / report.seconds if report.seconds > 0 else 0.0
    typer.echo(
        f"sent {len(report.streams)} run(s), {report.frames} frames ({mib:.1f} MiB) in "
        f"{report.seconds:.2f} s ({speed:.1f} MiB/s): streams {', '.join(report.streams)}"
    )
    if faults.any:
        typer.echo(
            f"faults on purpose: {report.count('dropped')} frames dropped, "
            f"{report.count('duplicated')} duplicated, {report.count('reordered')} pairs swapped"
        )


def register(app: typer.Typer) -> None:
    """Add ``arroyo simulate`` to ``app``."""
    app.command()(simulate)
