"""``arroyo view URL``: watch a stream live in the browser."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from arroyo.cli.common import fail
from arroyo.errors import ArroyoError, ConfigError
from arroyo.runtime.logs import configure, redact

if TYPE_CHECKING:
    from arroyo.view.settings import ViewSettings
    from arroyo.view.source import Source


async def _serve(
    source: Source, host: str, port: int, settings: ViewSettings, open_page: bool
) -> int:
    """Serve the page and feed it from ``source`` until Ctrl-C / SIGTERM; the exit code."""
    from arroyo.view.server import acquire, release

    try:
        server = await asyncio.to_thread(acquire, host, port, settings)
    except ArroyoError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        return 1
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stop() -> None:
        stopped.set()
        source.stop()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)

    async def started() -> None:
        await source.opened.wait()
        typer.echo(
            f"view started: {server.url} shows {source.url} ({source.how}); Ctrl-C to stop",
            err=True,
        )
        if open_page:
            import webbrowser

            webbrowser.open(server.url)

    saying = asyncio.create_task(started())
    code = 0
    try:
        await source.run(server)
        if not stopped.is_set():
            typer.echo("view: the source ended; the page stays up until Ctrl-C", err=True)
            await stopped.wait()
    except ArroyoError as exc:
        typer.secho(f"error: {redact(str(exc))}", fg=typer.colors.RED, err=True)
        code = 2 if isinstance(exc, ConfigError) else 1
    finally:
        saying.cancel()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        status = server.hub.status()
        await asyncio.to_thread(release, server)
    typer.echo(
        f"view: {status['received']} messages ({status['frames']} frames) shown; "
        f"{status['skipped']} frames skipped by the server, {status['undecodable']} "
        "undecodable",
        err=True,
    )
    return code


def view(
    url: Annotated[str, typer.Argument(help="What to watch (a broker URL).", show_default=False)],
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port of the page.")] = 8080,
    host: Annotated[
        str,
        typer.Option(help="Address to serve on (0.0.0.0: every interface, for other machines)."),
    ] = "127.0.0.1",
    from_beginning: Annotated[
        bool | None,
        typer.Option(
            "--from-beginning/--from-end",
            help="Start at the beginning of what the source keeps, or at its end (the "
            "default: a live view; an Avro file is shown from its beginning).",
            show_default=False,
        ),
    ] = None,
    consume: Annotated[
        bool,
        typer.Option(
            "--consume",
            help="Read with a consuming listener (it takes and acknowledges messages) "
            "instead of looking: Kafka/Redis need a group of the viewer's own (?group=).",
        ),
    ] = False,
    max_size: Annotated[
        int, typer.Option(min=16, max=8192, help="Largest frame side sent to a page (pixels).")
    ] = 1024,
    max_fps: Annotated[
        float,
        typer.Option(
            min=0,
            help="Frames sent to pages per second at most, the newest (0: every frame).",
        ),
    ] = 10.0,
    schema: Annotated[
        list[Path] | None,
        typer.Option(
            "--schema",
            "-s",
            help="A writer schema of facility metadata (.avsc file or folder), repeatable.",
        ),
    ] = None,
    registry: Annotated[
        str | None, typer.Option(help="Schema registry URL, for Confluent-framed data.")
    ] = None,
    open_page: Annotated[
        bool, typer.Option("--open", help="Open the page in this machine's web browser.")
    ] = False,
    origins: Annotated[
        str,
        typer.Option(
            help="Pages of other sites that may read the stream, comma-separated "
            "(https://view.lab.example: a proxy in front of the viewer), or '*' (any). "
            "By default only the viewer's own page may.",
        ),
    ] = "",
) -> None:
    """Watch a stream live in the browser: the run's Start, the newest frame, plots of
    metadata fields, rates, counters and the run's Stop.

    By default view only looks, as tail does: it takes, acknowledges and commits nothing
    and joins no consumer group, so a running pipeline is not disturbed; it shows what
    comes from now on (--from-beginning: what the source keeps, first). zmq+pull:// can
    only be read by taking the frames (point the sender at the viewer, or view a
    zmq+sub:// publisher). --consume reads with a listener instead (Kafka, Redis
    Streams: with a consumer group of the viewer's own, ?group=viewer). RabbitMQ
    classic and quorum queues cannot be looked at: view a stream queue, or --consume a
    queue of the viewer's own.

    A slow page never slows the source: each page has a small queue that keeps the
    newest frames, and the frames it had no time for are counted on the page.
    ?parser=NAME reads an instrument's own format (json-frame, msgpack-array, stream2...).

    Examples:

      arroyo view kafka://127.0.0.1:9092/frames

      arroyo view 'zmq+sub://127.0.0.1:5556?parser=json-frame' --port 8081

      arroyo view file:///data/run-42.avro
    """
    configure(logging.WARNING)
    try:
        from arroyo._optional import require
        from arroyo.brokers import parse_url
        from arroyo.cli.common import url_parser
        from arroyo.view import PURPOSE
        from arroyo.view.settings import ViewSettings
        from arroyo.view.source import plan

        require("aiohttp", "view", PURPOSE)
        parsed = parse_url(url)
        parser = url_parser(parsed, schema or [], registry)
        source = plan(parsed, parser, consume=consume, from_beginning=from_beginning)
        settings = ViewSettings(max_size=max_size, max_fps=max_fps, origins=origins)
    except ArroyoError as exc:
        raise fail(exc) from None
    raise typer.Exit(asyncio.run(_serve(source, host, port, settings, open_page)))
