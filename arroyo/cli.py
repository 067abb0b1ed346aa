"""The ``arroyo`` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from arroyo import schema as schemas_
from arroyo.errors import ArroyoError

app = typer.Typer(
    help="Stream scientific instrument data through Kafka, Redis, RabbitMQ and ZeroMQ.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
schemas_app = typer.Typer(
    help="Look at Arroyo's Avro schemas and check schema compatibility.", no_args_is_help=True
)
app.add_typer(schemas_app, name="schemas")


def _fail(exc: ArroyoError) -> typer.Exit:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(2)


@app.command()
def demo() -> None:
    """Run the main job on an in-process broker: no broker needed.

    Example: arroyo demo
    """
    typer.echo(
        "arroyo demo: a simulated detector emits a run (Start, frames as numpy Events, Stop);\n"
        "an operator integrates each frame; the results are archived to an Avro file.\n"
        "(The runtime that executes this lands with the 'Runtime' issue.)"
    )


@schemas_app.command("list")
def schemas_list() -> None:
    """List the built-in schemas.

    Example: arroyo schemas list
    """
    for name in schemas_.builtin_names():
        schema = schemas_.builtin(name)
        typer.echo(f"{name:18} {schema.fingerprint.hex()}  {schema.definition.get('doc', '')}")


@schemas_app.command("show")
def schemas_show(
    name: Annotated[str, typer.Argument(help="A built-in schema name or an .avsc file.")],
) -> None:
    """Print a schema as self-contained JSON (every named type written out).

    Examples: arroyo schemas show arroyo.Message;  arroyo schemas show my/metadata.avsc
    """
    try:
        path = Path(name)
        schema = schemas_.load(path) if path.suffix == ".avsc" else schemas_.builtin(name)
    except ArroyoError as exc:
        raise _fail(exc) from None
    typer.echo(schema.to_json())


@schemas_app.command("check")
def schemas_check(
    old: Annotated[Path, typer.Argument(help="The schema in use now (.avsc).")],
    new: Annotated[Path, typer.Argument(help="The schema that would replace it (.avsc).")],
    mode: Annotated[
        schemas_.Compatibility,
        typer.Option(help="backward: new reads old data; forward: old reads new; full: both."),
    ] = schemas_.Compatibility.BACKWARD,
) -> None:
    """Check whether NEW may replace OLD, as schema registries define compatibility.

    Exits 0 when compatible, 1 when not (with the reasons).

    Example: arroyo schemas check v1.avsc v2.avsc --mode full
    """
    try:
        verdict = schemas_.check_compatibility(schemas_.load(old), schemas_.load(new), mode)
    except ArroyoError as exc:
        raise _fail(exc) from None
    if verdict.compatible:
        typer.echo(f"compatible ({mode.value}): {new} may replace {old}")
        return
    typer.echo(f"NOT compatible ({mode.value}): {new} may not replace {old}")
    for problem in verdict.problems:
        typer.echo(f"  - {problem}")
    raise typer.Exit(1)


def main() -> None:
    """Entry point of the ``arroyo`` console script."""
    app()
