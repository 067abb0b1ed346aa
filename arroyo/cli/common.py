"""Helpers shared by the commands."""

from __future__ import annotations

import logging

import typer

from arroyo.errors import ArroyoError
from arroyo.runtime.logs import JsonFormatter, redact


def fail(exc: ArroyoError | str, code: int = 2) -> typer.Exit:
    """Print ``error: ...`` (passwords hidden) to stderr; return the Exit to raise.
    With ``--log-format json``, the error is a JSON log line (level ERROR) instead."""
    handlers = logging.getLogger().handlers
    if handlers and isinstance(handlers[0].formatter, JsonFormatter):
        logging.getLogger("arroyo.cli").error("error: %s", redact(str(exc)))
    else:
        typer.secho(f"error: {redact(str(exc))}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)
