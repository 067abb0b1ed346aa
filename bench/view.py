"""A pipeline watched in the browser: what two pages cost it (opt-in path: ``python -m
bench --only view``).

The pipeline is the 4 MiB row of :mod:`bench.zmq_kafka` (``arroyo simulate`` sends
1024 x 2048 uint16 frames on a bound PUSH socket; a Block reads them with the
``zmq+pull`` listener and produces them to Kafka) with a ``view://`` publisher beside
the Kafka one. Every variant is that same Block:

- ``two pages``: two pages' WebSockets are connected before the first frame, in a
  process of their own at the lowest CPU priority (a browser is on another machine: what
  reading costs it is not the pipeline's): one reads as fast as it can,
  one reads a message every 100 ms (a slow laptop on a slow link); each asks for frames
  of at most 1024 pixels a side, so a frame is reduced on the server (2 x 2 blocks), at
  most ``max_fps`` (10) frames a second;
- ``every frame``: the same two pages, the viewer's ``max_fps`` off (``max_fps=0``): every
  frame is reduced and sent while the viewer keeps up (when it falls behind it skips the
  oldest, counted in the note), so the fast page gets them all; the slow one the newest;
- ``no page``: nobody watches (the viewer's defaults; the pages' process runs, idle).

Each row is the pipeline's rate with two pages over its rate with none; a viewer must
not slow the pipeline (target >= 0.95). Each variant's note gives the CPU time its
process used per message: on a shared machine, where rates swing with the load of
others, it says what the viewer costs more steadily than a rate does. For the same
reason a full run compares the medians of at least :data:`RUNS` runs per variant (about
3 minutes in all).
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
from collections.abc import Callable

from arroyo.testing import free_port
from bench.common import Measurement, Row, Timing, best_of, run_variant, unique
from bench.kafka_kafka import KAFKA, create_topics, delete_topics, messages_in, producer_settings
from bench.zmq_kafka import COUNTS, FRAME_SHAPE, HWM, _sender

SIZE = FRAME_SHAPE[0] * FRAME_SHAPE[1] * 2


async def pipeline(
    port: int, topic: str, count: int, pages: int, max_fps: float | None = None, nice: int = 19
) -> Timing:
    """The Block (zmq+pull -> Kafka and view://), timed once ``pages`` pages watch
    (``max_fps``: the viewer's, when not its default; ``nice``: the pages' process's)."""
    from arroyo.brokers import open_listener, open_publisher
    from arroyo.runtime import Block
    from arroyo.view.publisher import ViewPublisher
    from arroyo.view.server import acquire, release
    from arroyo.view.settings import ViewSettings
    from bench.harness import measure_block

    settings = ViewSettings() if max_fps is None else ViewSettings(max_fps=max_fps)
    server = await asyncio.to_thread(acquire, "127.0.0.1", 0, settings)
    # Every variant starts the pages' process and waits until it has connected its pages
    # (none for ``no page``), so that the sender, started before, has had the same time
    # to get ready in all of them: the no-page variant used to start at once and wait
    # for the sender's first frames in its timed part.
    command = [sys.executable, "-m", "bench.view", server.url, str(nice), str(pages)]
    watchers = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE)
    try:
        assert watchers.stdout is not None
        line = await asyncio.wait_for(watchers.stdout.readline(), 60)
        if line.strip() != b"ready" or len(server.hub.clients) != pages:
            raise RuntimeError(f"{len(server.hub.clients)} of {pages} pages connected")
        listener = open_listener(f"zmq+pull://127.0.0.1:{port}", {"rcvhwm": HWM})
        kafka = open_publisher(f"kafka://{KAFKA}/{topic}", producer_settings())
        view = ViewPublisher("127.0.0.1", server.port)
        block = Block(listener, None, [kafka, view], name="watched")
        began = resource.getrusage(resource.RUSAGE_SELF)
        timing = await measure_block(block, count)
        ended = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (ended.ru_utime - began.ru_utime) + (ended.ru_stime - began.ru_stime)
        status = server.hub.status()
        timing.note = f"CPU {cpu / count * 1e3:.1f} ms per message (this process)"
        if pages:
            prepared = status["frames"] - status["skipped"]
            timing.note += f"; {prepared} frames sent to the pages, the others without image"
        return timing
    finally:
        watchers.kill()
        await watchers.wait()
        await asyncio.to_thread(release, server)


async def watch(url: str, nice: int = 19, pages: int = 2) -> None:
    """Two pages: one fast, one slow (until killed), at the lowest CPU priority: their
    browsers would be on other machines, so what they cost to read is not the
    pipeline's (the server's cost is). Prints ``ready`` once they are connected
    (``pages=0``: connects none, prints ``ready`` and waits)."""
    from arroyo.view.client import ViewClient

    os.nice(nice)
    clients = [ViewClient(url), ViewClient(url, delay=0.1)][:pages]
    for client in clients:
        await client.connect()
    print("ready", flush=True)
    if clients:
        await asyncio.gather(*(client.read(within=3600) for client in clients))
    else:
        await asyncio.Event().wait()


def _variant(
    pages: int, count: int, made: list[str], max_fps: float | None = None
) -> Callable[[], Measurement]:
    def run() -> Measurement:
        topic = unique(f"view-{pages}")
        create_topics(topic)
        made.append(topic)
        port = free_port()
        sender = _sender(port, count, SIZE)
        try:
            args = {"port": port, "topic": topic, "count": count, "pages": pages}
            if max_fps is not None:
                args["max_fps"] = max_fps
            result = run_variant("view", "pipeline", args, SIZE)
        finally:
            try:
                sender.wait(30)
            except subprocess.TimeoutExpired:
                sender.kill()
                sender.wait()
        if not result.error and messages_in(topic) < count:
            result.error = f"{topic} holds fewer than {count} messages"
        delete_topics(topic)
        return result

    return run


RUNS = 15
"""Runs per variant in a full run, at least: a run is about 5 s, and its rate varies by
5-6% from one run to the next on the shared cores, more than the viewer costs. Medians
of 7 swung from 0.90 to 0.96 (defaults) and from 0.93 to 1.08 (every frame) between two
bench runs on the same code; medians of 15 read 0.99 and 0.96."""


def run(quick: bool, repeat: int) -> list[Row]:
    """The rows, 4 MiB frames: two pages against none, with the viewer's default
    ``max_fps`` and with every frame prepared and sent (``max_fps=0``: the fast page gets
    every frame). A full run: at least :data:`RUNS` runs per variant, alternating,
    medians compared."""
    count = COUNTS[4 << 20][0 if quick else 1]
    runs = repeat if quick else max(repeat, RUNS)
    made: list[str] = []
    variants = [_variant(2, count, made), _variant(2, count, made, 0), _variant(0, count, made)]
    try:
        two, every, none = best_of(variants, runs)
    finally:
        delete_topics(*made)
    note = f"{count} messages, {count * SIZE / (1 << 30):.2f} GiB; ZMQ -> Kafka + view://"
    note += f"; median of {runs} runs per variant"
    return [
        Row("watched by two pages (view://)", "4 MiB", two, none, "no page", note, target=0.95),
        Row(
            "watched by two pages, every frame (view://?max_fps=0)",
            "4 MiB",
            every,
            none,
            "no page",
            note,
            target=0.95,
        ),
    ]


if __name__ == "__main__":
    asyncio.run(watch(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
