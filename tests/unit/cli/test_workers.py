"""``arroyo run --workers N``: N processes; one dying leaves the others; a signal stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from arroyo.testing import free_port


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def wait_for(condition, within: float = 30.0, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within} s: {what}")
        time.sleep(0.05)


@pytest.mark.timeout(120)
def test_a_dead_worker_leaves_the_others_and_sigterm_stops_them_all(tmp_path: Path) -> None:
    config = tmp_path / "idle.yaml"
    # A memory listener waits forever for input: the workers just stay up.
    config.write_text("blocks:\n  - name: idle\n    listener: memory://nothing\n")
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "arroyo", "run", str(config), "--workers", "3"],
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    lines: list[str] = []
    assert supervisor.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(supervisor.stderr), daemon=True)
    reader.start()
    try:
        started = lambda: sum("started: memory://nothing" in line for line in lines)  # noqa: E731
        wait_for(lambda: started() == 3, what="3 workers running their block")
        first, *others = sorted(children_of(supervisor.pid))
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: first not in children_of(supervisor.pid), what="worker reaped")
        assert supervisor.poll() is None  # the supervisor and the others go on
        assert all(pid in children_of(supervisor.pid) for pid in others)
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
    stderr = "".join(lines)
    assert "exited with -9" in stderr
    assert stderr.count("exited with 0") == 2  # the others stopped cleanly
    assert supervisor.returncode == 1  # a worker died: the run as a whole did not end well


@pytest.mark.timeout(60)
def test_metrics_port_serves_prometheus_metrics(tmp_path: Path) -> None:
    import urllib.request

    port = free_port()
    config = tmp_path / "idle.yaml"
    config.write_text("blocks:\n  - name: idle\n    listener: memory://nothing\n")
    worker = subprocess.Popen(
        [sys.executable, "-m", "arroyo", "run", str(config), "--metrics-port", str(port)],
        stderr=subprocess.DEVNULL,
    )
    body = ""

    def answers() -> bool:
        nonlocal body
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as reply:
                body = reply.read().decode()
            return True
        except OSError:
            return False

    try:
        wait_for(answers, what="metrics served")
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    for name in ["arroyo_received_total", "arroyo_queue_depth", "arroyo_dead_lettered_total"]:
        assert f"# TYPE {name.removesuffix('_total')}" in body or f"# TYPE {name}" in body
    assert 'arroyo_received_total{block="idle"} 0.0' in body
    assert 'arroyo_queue_depth{block="idle"} 0.0' in body
