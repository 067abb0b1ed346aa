"""``arroyo --version``: the installed distribution's version."""

from __future__ import annotations

import platform
from importlib import metadata

import typer


def version_text() -> str:
    """``arroyo 0.1.0 (arroyo-streams, Python 3.11.2)``: the version of the distribution
    that installed the ``arroyo`` command (whatever its name), or of the source tree when
    it is not installed."""
    for entry in metadata.entry_points(group="console_scripts", name="arroyo"):
        if entry.value == "arroyo.cli:main" and entry.dist is not None:
            name, version = entry.dist.metadata["Name"], entry.dist.version
            break
    else:
        from arroyo import __version__

        name, version = "not installed", __version__
    return f"arroyo {version} ({name}, Python {platform.python_version()})"


def show_version(value: bool) -> None:
    """Typer callback of ``--version``: print the version and exit."""
    if value:
        typer.echo(version_text())
        raise typer.Exit()
