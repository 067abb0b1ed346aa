"""The reader's clone: a copy of this working tree set up with the README's own set-up
command, and how commands run in it (to their end, or until Ctrl-C)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.docs.snippets import UNTIL_CTRL_C, readme_snippets

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SETUP_TIMEOUT = 900
COMMAND_TIMEOUT = 300


def _working_tree_files() -> list[str]:
    """What a clone of this working tree would hold (tracked and new files, not ignored)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        pytest.fail("tests/docs needs a git checkout of Arroyo (git ls-files)")
    return [name for name in listed.split("\0") if name and (ROOT / name).exists()]


def _fresh_shell_env() -> dict[str, str]:
    """This environment as a new terminal would have it: no virtualenv active."""
    env = dict(os.environ)
    venv = env.pop("VIRTUAL_ENV", None)
    paths = [p for p in env.get("PATH", "").split(os.pathsep) if p]
    here = str(ROOT / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(
        p for p in paths if p != here and not (venv and p.startswith(venv))
    )
    env.pop("PYTHONPATH", None)
    return env


@dataclass
class Clone:
    """The reader's clone: ``root``, and the environment of a shell in which the README's
    set-up command ran (its virtualenv active)."""

    root: Path
    env: dict[str, str]
    setup_output: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def run(self, script: str, timeout: float = COMMAND_TIMEOUT) -> str:
        """Run ``script`` with bash (-e, pipefail) in the clone; its output; fail with the
        output when it does not succeed or leaves a process behind."""
        process = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process.pid)
            output, _ = process.communicate()
            pytest.fail(f"did not end within {timeout} s:\n{script}\n{output.decode()[-4000:]}")
        text = output.decode(errors="replace")
        assert process.returncode == 0, f"exit {process.returncode}:\n{script}\n{text[-4000:]}"
        assert _group_ends(process.pid, 30), f"left a process running:\n{script}\n{text[-2000:]}"
        return text

    def start(self, command: str, log: Path) -> subprocess.Popen[bytes]:
        """Start ``command`` in a session of its own (its output to ``log``); return at once."""
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["bash", "-c", command],
                cwd=self.root,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def until_ctrl_c(self, command: str, log: Path, started: int = 1) -> subprocess.Popen[bytes]:
        """Start ``command``; return once its log shows ``started`` blocks up."""
        process = self.start(command, log)
        deadline = time.monotonic() + 120
        while log.read_text(errors="replace").count("started:") < started:
            if process.poll() is not None:
                pytest.fail(f"{command!r} exited with {process.returncode}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"{command!r} did not start within 120 s:\n{_tail(log)}")
            time.sleep(0.1)
        return process

    def ctrl_c(self, process: subprocess.Popen[bytes], log: Path, codes: tuple[int, ...]) -> str:
        """Press Ctrl-C (SIGINT to the process group, as a terminal does); the output."""
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(90)
        except subprocess.TimeoutExpired:
            _kill_group(process.pid)
            pytest.fail(f"still running 90 s after Ctrl-C:\n{_tail(log)}")
        text = log.read_text(errors="replace")
        assert process.returncode in codes, f"exit {process.returncode} after Ctrl-C:\n{_tail(log)}"
        assert "Traceback" not in text, _tail(log)
        assert _group_ends(process.pid, 30), f"left a process running:\n{_tail(log)}"
        return text


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _group_ends(pgid: int, within: float) -> bool:
    """True once no process of the group ``pgid`` is left (killing them after ``within``)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    _kill_group(pgid)
    return False


def setup_command() -> str:
    """The README's set-up command: its first shell block, which runs ``arroyo demo``."""
    for snippet in readme_snippets(README):
        if snippet.lang == "sh" and "arroyo demo" in snippet.text and not snippet.not_run:
            return snippet.text
    pytest.fail("README.md has no shell block with the set-up command (arroyo demo)")


def make_clone(root: Path) -> Clone:
    """Copy this working tree to ``root`` and run the README's set-up command there."""
    for name in _working_tree_files():
        source, target = ROOT / name, root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():  # as git checks it out (arroyo/schemas)
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    env = _fresh_shell_env()
    command = setup_command()
    assert not UNTIL_CTRL_C.search(command)
    done = subprocess.run(
        ["bash", "-e", "-c", command],
        cwd=root,
        env=env,
        capture_output=True,
        timeout=SETUP_TIMEOUT,
    )
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, f"the README's set-up command failed:\n{output[-4000:]}"
    venv = root / ".venv"
    env = {**env, "VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}"}
    return Clone(root, env, output)


def stop_all(clone: Clone) -> None:
    """Kill whatever the clone's commands left running."""
    for process in clone.processes:
        _kill_group(process.pid)


def starts_expected(clone: Clone, command: str) -> int:
    """How many ``started:`` lines mean ``command`` is up: one per block and worker."""
    workers = re.search(r"--workers[ =](\d+)", command)
    count = int(workers[1]) if workers else 1
    config = re.search(r"arroyo run (\S+)", command)
    if config is None:
        return count
    chosen = command.count("--block ")
    if chosen:
        return chosen * count
    blocks = yaml.safe_load((clone.root / config[1]).read_text())["blocks"]
    return len(blocks) * count
