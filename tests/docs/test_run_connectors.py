"""The commands in the header comment of every connectors/*.yaml run as written, side by
side as in terminals of their own, until Ctrl-C."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.reader import ROOT, Clone
from tests.docs.snippets import header_commands
from tests.docs.test_readme import _starts_expected

CONNECTORS = sorted((ROOT / "connectors").glob("*.yaml"))

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.rabbitmq]


@pytest.mark.parametrize("config", CONNECTORS, ids=[c.name for c in CONNECTORS])
def test_header_commands_run_as_written(config: Path, clone: Clone, tmp_path: Path) -> None:
    commands = header_commands(config)
    assert commands, f"{config.name}: the header says how to run it"
    running = []
    for number, command in enumerate(commands):
        log = tmp_path / f"command-{number}.log"
        if command.startswith("arroyo simulate"):
            # A simulator stopped by Ctrl-C exits 130, or dies of the SIGINT itself.
            running.append((clone.start(command, log), log, (0, 130, -2)))
        else:
            started = _starts_expected(clone, command)
            running.append((clone.until_ctrl_c(command, log, started), log, (0,)))
    for process, log, codes in reversed(running):
        clone.ctrl_c(process, log, codes)
