"""Writing a pipeline config in a test and taking the one-line error building it gives
(tests/unit/test_config.py, tests/unit/test_build.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from arroyo.build import build_file
from arroyo.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "pipeline.yaml") -> Path:
    """``text`` (dedented) as the file ``name`` in ``tmp_path``."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def refused(path: Path) -> str:
    """The error building ``path`` gives: one line (asserted), as the CLI prints it."""
    with pytest.raises(ConfigError) as info:
        build_file(path)
    message = str(info.value)
    assert "\n" not in message, message
    return message
