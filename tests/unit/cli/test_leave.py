"""The ``arroyo`` command ends with its exit code even when a thread of it never returns
(arroyo/cli/leave.py, armed by arroyo.cli.main)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import sys
    import threading

    from arroyo.cli import leave, main

    leave.GRACE = 1.0
    if sys.argv.pop() == "stuck":  # as a thread blocked in a client library call
        threading.Thread(target=threading.Event().wait, name="stuck-call").start()
    sys.argv = ["arroyo", "run", "/nonexistent/pipeline.yaml"]  # fails: exit code 2
    main()
    """
)


def run(case: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, case], capture_output=True, text=True, timeout=60
    )
    return done.returncode, done.stderr


def test_a_thread_that_never_returns_does_not_keep_the_process_alive() -> None:
    code, stderr = run("stuck")
    assert code == 2, stderr
    assert "threads still running: stuck-call" in stderr
    assert "ending the process with exit code 2" in stderr


def test_a_process_without_stuck_threads_exits_as_usual() -> None:
    code, stderr = run("clean")
    assert code == 2, stderr
    assert "exit took more than" not in stderr
