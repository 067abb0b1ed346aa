"""``arroyo schemas``: look at Arroyo's Avro schemas and check compatibility."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from arroyo import schema as schemas_
from arroyo.cli.common import fail
from arroyo.errors import ArroyoError

app = typer.Typer(
    help="Look at Arroyo's Avro schemas and check schema compatibility.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command("list")
def schemas_list() -> None:
    """List the built-in schemas.

    Example: arroyo schemas list
    """
    for name in schemas_.builtin_names():
        schema = schemas_.builtin(name)
        typer.echo(f"{name:18} {schema.fingerprint.hex()}  {schema.definition.get('doc', '')}")


@app.command("show")
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
        raise fail(exc) from None
    typer.echo(schema.to_json())


@app.command("check")
def schemas_check(
    old: Annotated[Path, typer.Argument(help="The schema in use now (.avsc).")],
    new: Annotated[Path, typer.Argument(help="The schema that would replace it (.avsc).")],
    mode: Annotated[
        schemas_.Compatibility,
        typer.Option(
            "--mode", "-m", help="backward: new reads old data; forward: old reads new; full: both."
        ),
    ] = schemas_.Compatibility.BACKWARD,
) -> None:
    """Check whether NEW may replace OLD, as schema registries define compatibility.

    Exits 0 when compatible, 1 when not (with the reasons).

    Example: arroyo schemas check v1.avsc v2.avsc --mode full
    """
    try:
        verdict = schemas_.check_compatibility(schemas_.load(old), schemas_.load(new), mode)
    except ArroyoError as exc:
        raise fail(exc) from None
    if verdict.compatible:
        typer.echo(f"compatible ({mode.value}): {new} may replace {old}")
        return
    typer.echo(f"NOT compatible ({mode.value}): {new} may not replace {old}")
    for problem in verdict.problems:
        typer.echo(f"  - {problem}")
    raise typer.Exit(1)
