"""Every fenced block of README.md runs as written, in a fresh clone set up with the
README's own set-up command, against the real brokers (see tests/docs/snippets.py for
how a block says it is a file, runs until Ctrl-C, or is not run)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.docs.reader import README, Clone, setup_command, starts_expected
from tests.docs.snippets import UNTIL_CTRL_C, Snippet, readme_snippets

SNIPPETS = readme_snippets(README)
RUN = [s for s in SNIPPETS if not s.not_run and s.text != setup_command()]

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.rabbitmq]


def test_the_setup_command_runs_the_demo_and_it_checks_out(clone: Clone) -> None:
    assert "error" not in clone.setup_output.lower(), clone.setup_output[-3000:]
    assert re.search(r"\b1000 frames\b", clone.setup_output), clone.setup_output[-3000:]


def test_the_readme_has_exactly_two_setup_commands_and_says_why_a_block_is_not_run() -> None:
    shell = [s for s in SNIPPETS if s.lang == "sh"]
    setup = [s for s in shell if s.text == setup_command()]
    assert len(setup) == 1
    not_run = [s for s in SNIPPETS if s.not_run]
    assert [s.text.splitlines()[1] for s in not_run if "./test.sh" in s.text] == ["./test.sh"]
    for snippet in not_run:
        assert len(snippet.not_run or "") > 10, f"{snippet.where}: say why it is not run"
    assert {s.lang for s in SNIPPETS} <= {"sh", "python", "yaml"}


def run_shell(snippet: Snippet, clone: Clone, logs: Path) -> None:
    """Run a shell block line by line as a reader would: ordinary lines to their end,
    a ``# runs until Ctrl-C`` line until it is up; stop those with Ctrl-C at the end."""
    pending: list[str] = []
    running = []
    for number, line in enumerate(snippet.text.splitlines()):
        if UNTIL_CTRL_C.search(line):
            if pending:
                clone.run("\n".join(pending))
                pending = []
            log = logs / f"line-{number}.log"
            started = starts_expected(clone, line)
            running.append((clone.until_ctrl_c(line, log, started), log))
        else:
            pending.append(line)
    if pending:
        clone.run("\n".join(pending))
    for process, log in reversed(running):
        clone.ctrl_c(process, log, (0,))


@pytest.mark.parametrize("snippet", RUN, ids=[s.id for s in RUN])
def test_readme_block_runs_as_written(snippet: Snippet, clone: Clone, tmp_path: Path) -> None:
    if snippet.filename:
        target = clone.root / snippet.filename
        target.write_text(snippet.text)
        if target.suffix == ".py":
            clone.run(f"python -m py_compile {snippet.filename}")
        else:
            assert isinstance(yaml.safe_load(snippet.text), dict)
        return
    if snippet.lang == "sh":
        run_shell(snippet, clone, tmp_path)
    elif snippet.lang == "python":
        script = tmp_path / "block.py"
        script.write_text(snippet.text)
        clone.run(f"python {script}")
    else:
        pytest.fail(
            f"{snippet.where}: a {snippet.lang} block must name its file or say why not run"
        )
