"""``arroyo check CONFIG [--connect]``: everything ``arroyo run`` checks, without running."""

from __future__ import annotations

import asyncio
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
    from arroyo.build import Built


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


async def _try(where: str, url: str, endpoint: Any, limit: float) -> Outcome:
    """Reach one endpoint with its connector's probe, within ``limit`` seconds."""
    from arroyo.brokers import parse_url
    from arroyo.brokers.connector import CONNECTORS

    probe = CONNECTORS.for_scheme(parse_url(url).scheme).probe
    if probe is None:
        return Outcome(where, endpoint.name, "skipped", "its connector has nothing to try")
    try:
        async with asyncio.timeout(limit + 5):
            status, detail = await probe(endpoint, limit)
    except TimeoutError:
        status, detail = "FAILED", f"no answer within {limit:g} s"
    except Exception as exc:  # any failure is the answer here
        status, detail = "FAILED", redact(str(exc) or type(exc).__name__)
        detail = detail.removeprefix(f"{endpoint.name}: ")
    return Outcome(where, endpoint.name, status, detail)


async def connect_all(blocks: list[Built], limit: float) -> list[Outcome]:
    """Try every endpoint of ``blocks`` (one after the other), each within ``limit`` s."""
    outcomes = []
    for built in blocks:
        for where, config, endpoint in topics.endpoints(built, built.block.name):
            outcomes.append(await _try(where, config.url, endpoint, limit))
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
    from arroyo.build import build_file

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
