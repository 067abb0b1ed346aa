"""sentry-arroyo installs the same import name: an environment with both fails at import
with a message that says what happened and what to do."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import arroyo

PACKAGE = Path(arroyo.__file__).parent


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """An ``arroyo`` package folder as pip leaves it after installing sentry-arroyo over
    Arroyo: Arroyo's files plus sentry-arroyo's."""
    shutil.copytree(PACKAGE, tmp_path / "arroyo", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "arroyo" / "processing").mkdir()
    (tmp_path / "arroyo" / "processing" / "processor.py").write_text("# sentry-arroyo\n")
    return tmp_path


def _python(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(folder)}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=60, cwd=folder
    )


@pytest.mark.parametrize(
    "args",
    [("-c", "import arroyo"), ("-c", "import arroyo.cli"), ("-m", "arroyo", "--help")],
)
def test_arroyo_beside_sentry_arroyo_says_so_at_import(mixed: Path, args: tuple[str]) -> None:
    result = _python(mixed, *args)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: ")
    assert "'sentry-arroyo'" in last and "cannot share an environment" in last


def test_without_sentry_arroyo_nothing_is_said(mixed: Path) -> None:
    shutil.rmtree(mixed / "arroyo" / "processing")
    result = _python(mixed, "-c", "import arroyo, arroyo.cli; print(arroyo.__file__)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(mixed / "arroyo" / "__init__.py")


def test_the_command_line_says_so_when_sentry_arroyo_replaced_arroyos_init(mixed: Path) -> None:
    (mixed / "arroyo" / "__init__.py").write_text('"""sentry-arroyo"""\n')
    result = _python(mixed, "-m", "arroyo", "--help")
    assert result.returncode != 0
    assert "cannot share an environment" in result.stderr.strip().splitlines()[-1]
