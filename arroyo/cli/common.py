"""Helpers shared by the commands."""

from __future__ import annotations

import typer

from arroyo.errors import ArroyoError
from arroyo.runtime.logs import redact


def fail(exc: ArroyoError | str, code: int = 2) -> typer.Exit:
    """Print ``error: ...`` (passwords hidden) to stderr; return the Exit to raise."""
    typer.secho(f"error: {redact(str(exc))}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)
