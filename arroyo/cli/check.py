"""``arroyo check CONFIG [--connect]``: everything ``arroyo run`` checks, without running."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from arroyo.cli import topics
from arroyo.cli.common import fail
from arroyo.errors import ArroyoError
from arroyo.runtime.logs import configure, redact

if TYPE_CHECKING:
    from arroyo.config import Built

_BROKER_MODULE = "arroyo.brokers."


@dataclass(frozen=True)
class Outcome:
    """How one endpoint answered: ``status`` is ok, FAILED or skipped."""

    where: str
    name: str
    status: str
    detail: str

    def line(self, width: int = 0) -> str:
        """``  ok      block.listener  URL: detail`` (``where`` padded to ``width``)."""
        return f"  {self.status:7} {self.where:{width}}  {self.name}: {self.detail}"


def describe(built: Built) -> str:
    """``name: LISTENER -> OPERATOR -> PUBLISHER, ...; dead letter URL`` (no password)."""
    block = built.block
    publishers = ", ".join(p.name for p in block.publishers) or "(no publishers)"
    line = f"{block.name}: {block.listener.name} -> {built.config.operator.class_} -> {publishers}"
    if block.dead_letter is not None:
        line += f"; dead letter {block.dead_letter.name}"
    return line


def _broker(connector: Any) -> str:
    module = type(connector).__module__
    return module[len(_BROKER_MODULE) :] if module.startswith(_BROKER_MODULE) else module


async def _kafka_topics(config: Any, wanted: list[str], limit: float) -> str:
    from arroyo.brokers import kafka_admin

    counts = await asyncio.to_thread(kafka_admin.partitions, config, limit)
    parts = []
    for topic in wanted:
        if topic.startswith("^"):
            matching = [t for t in counts if _matches(topic, t)]
            parts.append(f"pattern {topic!r} matches {len(matching)} topic(s)")
        elif topic in counts:
            parts.append(f"topic {topic!r} has {counts[topic]} partition(s)")
        else:
            parts.append(f"topic {topic!r} does not exist (yet)")
    return "; ".join(parts)


def _matches(pattern: str, topic: str) -> bool:
    import re

    return re.match(pattern, topic) is not None


async def _listener(listener: Any, limit: float) -> tuple[str, str]:
    """Connect to a listener's broker without reading or joining anything."""
    broker = _broker(listener)
    if broker == "kafka":
        return "ok", await _kafka_topics(listener.config, listener.topics, limit)
    if broker == "redis":
        from arroyo.brokers.redis import _connect

        settings = dataclasses.replace(listener.settings, connect_timeout=limit)
        client = settings.client()
        await _connect(client, settings, listener.name)  # closes the client when it fails
        await client.aclose()
        return "ok", "the server answers"
    if broker == "rabbitmq":
        settings = dataclasses.replace(listener.settings, connect_timeout=limit)
        connection = await settings.connect(listener.name)
        await connection.close()
        return "ok", "connected"
    if broker == "file":
        if not await asyncio.to_thread(Path(listener.path).is_file):
            return "FAILED", "no such file"
        return "ok", "the file is there"
    if broker == "memory":
        return "ok", "in this process"
    if broker == "zmq":
        return "skipped", "ZeroMQ has no handshake to try (it connects when a peer is there)"
    return "skipped", f"nothing to try for {broker} connectors"


async def _publisher(publisher: Any, limit: float) -> tuple[str, str]:
    """Start and close a publisher (for brokers where that creates nothing)."""
    broker = _broker(publisher)
    if broker in ("rabbitmq", "redis"):  # start() would declare queues: only connect
        return await _listener(publisher, limit)
    if broker == "file":
        folder = Path(publisher.path).parent
        there = await asyncio.to_thread(folder.is_dir)
        return "ok", f"{folder} {'exists' if there else 'will be made'}"
    if broker != "kafka":
        return await _listener(publisher, limit)
    if hasattr(publisher, "connect_timeout"):
        publisher.connect_timeout = min(publisher.connect_timeout, limit)
    await publisher.start()
    await publisher.close()
    return "ok", "producer connected; " + await _kafka_topics(
        publisher.config, [publisher.topic], limit
    )


async def _try(where: str, connector: Any, listener: bool, limit: float) -> Outcome:
    try:
        async with asyncio.timeout(limit + 5):
            probe = _listener if listener else _publisher
            status, detail = await probe(connector, limit)
    except TimeoutError:
        status, detail = "FAILED", f"no answer within {limit:g} s"
    except (ArroyoError, OSError, Exception) as exc:  # any failure is the answer here
        status, detail = "FAILED", redact(str(exc) or type(exc).__name__)
        detail = detail.removeprefix(f"{connector.name}: ")
    return Outcome(where, connector.name, status, detail)


async def connect_all(blocks: list[Built], limit: float) -> list[Outcome]:
    """Try every endpoint of ``blocks`` (one after the other), each within ``limit`` s."""
    outcomes = []
    for built in blocks:
        for where, _, connector in topics.endpoints(built, built.block.name):
            is_listener = where.endswith(".listener")
            outcomes.append(await _try(where, connector, is_listener, limit))
    return outcomes


def check(
    config: Annotated[Path, typer.Argument(help="The pipeline's YAML file.", show_default=False)],
    connect: Annotated[
        bool, typer.Option("--connect", help="Also try to reach each broker (reads nothing).")
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to wait for each broker (with --connect).")
    ] = 10.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")] = False,
) -> None:
    """Check a pipeline as `arroyo run` would, without running it.

    Reads and validates the YAML, every key and broker option, imports the operators and
    loads the schemas, exactly as `run` does before it starts; prints one line per block
    (listener -> operator -> publishers; dead letter). Nothing connects.

    With --connect, each endpoint is tried once, one line each (ok, FAILED with the
    reason, or skipped for ZeroMQ, which has no handshake): Kafka says how many
    partitions each topic has, publishers connect (Kafka starts and closes its
    producer); nothing is read, acknowledged, declared or created.

    Exit code: 0 when all is well, 1 when an endpoint failed, 2 when the config is wrong.

    Examples:

      arroyo check connectors/kafka-workers.yaml

      arroyo check connectors/kafka-workers.yaml --connect --timeout 5
    """
    from arroyo.config import build_file

    configure(logging.DEBUG if verbose else logging.WARNING)
    try:
        built = build_file(config)
        topics.requests(built, str(config))
    except ArroyoError as exc:
        raise fail(exc) from None
    for one in built:
        typer.echo(describe(one))
    typer.echo(f"{config}: {len(built)} block(s), ready to run")
    if not connect:
        return
    if not verbose:
        logging.getLogger().setLevel(logging.CRITICAL)  # each failure is one line below
    outcomes = asyncio.run(connect_all(built, timeout))
    width = max(len(o.where) for o in outcomes)
    for outcome in outcomes:
        typer.echo(outcome.line(width))
    counts = {s: sum(o.status == s for o in outcomes) for s in ("ok", "FAILED", "skipped")}
    typer.echo(", ".join(f"{n} {s}" for s, n in counts.items() if n))
    if counts["FAILED"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``arroyo check`` to ``app``."""
    app.command()(check)
