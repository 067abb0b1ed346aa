"""``arroyo --version``: the version of the installed distribution."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from typer.testing import CliRunner

from arroyo.cli import app

ROOT = Path(__file__).parents[3]


def test_version_is_the_installed_distributions() -> None:
    name = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    expected = f"arroyo {metadata.version(name)} ({name}, Python "
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(expected)
    # the console script, as a user types it
    script = Path(sys.executable).parent / "arroyo"
    typed = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert typed.stdout.startswith(expected)
    assert typed.stdout.count("\n") == 1
