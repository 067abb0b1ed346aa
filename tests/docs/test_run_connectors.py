"""The commands in the header comment of every connectors/*.yaml run as written, side by
side as in terminals of their own: `arroyo run` and `arroyo bridge` until they are up,
the others (a simulator, tail --count) until they end by themselves; then Ctrl-C."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.docs.reader import ROOT, Clone, starts_expected
from tests.docs.snippets import header_commands

CONNECTORS = sorted((ROOT / "connectors").glob("*.yaml"))
FINITE_WITHIN = 300

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.rabbitmq]


def _runs_until_ctrl_c(command: str) -> bool:
    words = command.split()
    return words[1] in ("run", "bridge") and "--count" not in words


@pytest.mark.parametrize("config", CONNECTORS, ids=[c.name for c in CONNECTORS])
def test_header_commands_run_as_written(config: Path, clone: Clone, tmp_path: Path) -> None:
    commands = header_commands(config)
    assert commands, f"{config.name}: the header says how to run it"
    long_running, finite = [], []
    for number, command in enumerate(commands):
        log = tmp_path / f"command-{number}.log"
        if _runs_until_ctrl_c(command):
            started = starts_expected(clone, command)
            long_running.append((clone.until_ctrl_c(command, log, started), log))
        else:
            finite.append((command, clone.start(command, log), log))
    for command, process, log in finite:
        try:
            code = process.wait(FINITE_WITHIN)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{command!r} did not end within {FINITE_WITHIN} s:\n{log.read_text()}")
        assert code == 0, f"{command!r} exited with {code}:\n{log.read_text()[-3000:]}"
    for process, log in reversed(long_running):
        clone.ctrl_c(process, log, (0,))
