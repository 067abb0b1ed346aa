"""``arroyo run --workers N``: N processes; one that dies is restarted (with backoff) and the
others go on; a signal stops all; every log line names its worker."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from arroyo import Run
from arroyo.brokers.file import FilePublisher
from arroyo.cli.supervise import Backoff
from arroyo.cli.supervise import Supervisor as SupervisorLoop
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


ARROYO_RUN = [sys.executable, "-m", "arroyo", "run"]
IDLE = "blocks:\n  - name: idle\n    listener: memory://nothing\n"
"""A memory listener waits forever for input: the workers just stay up."""


class Supervisor:
    """``arroyo run CONFIG --workers N`` with its stderr collected line by line."""

    def __init__(self, config: Path, workers: int, new_session: bool = False) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "arroyo", "run", str(config), "--workers", str(workers)],
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            start_new_session=new_session,
        )
        self.lines: list[str] = []
        assert self.process.stderr is not None
        stream = self.process.stderr
        self._reader = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self._reader.start()

    def count(self, text: str) -> int:
        return sum(text in line for line in list(self.lines))

    def pids(self, pattern: str) -> dict[int, int]:
        """worker index -> pid, from the supervisor's lines matching ``pattern``
        (with groups index and pid)."""
        found = {}
        for line in list(self.lines):
            if match := re.search(pattern, line):
                found[int(match["index"])] = int(match["pid"])
        return found

    def finish(self, timeout: float = 60) -> str:
        self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return "".join(self.lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


STARTED = r"worker (?P<index>\d) started \(pid (?P<pid>\d+)\)"
RESTARTED = r"worker (?P<index>\d) restarted \(pid (?P<pid>\d+); restart 1 of this worker\)"


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.timeout(120)
def test_a_killed_worker_is_restarted_and_the_others_go_on(tmp_path: Path) -> None:
    config = tmp_path / "idle.yaml"
    config.write_text(IDLE)
    supervisor = Supervisor(config, 3)
    try:
        wait_for(lambda: supervisor.count("started: memory://nothing") == 3, what="3 workers up")
        pids = supervisor.pids(STARTED)
        assert sorted(pids) == [0, 1, 2]
        assert sorted(pids.values()) == sorted(children_of(supervisor.process.pid))
        os.kill(pids[0], signal.SIGKILL)
        wait_for(lambda: 0 in supervisor.pids(RESTARTED), what="worker 0 restarted")
        new_pid = supervisor.pids(RESTARTED)[0]
        assert new_pid != pids[0]
        wait_for(lambda: supervisor.count("started: memory://nothing") == 4, what="it runs again")
        assert sorted(children_of(supervisor.process.pid)) == sorted([new_pid, pids[1], pids[2]])
        supervisor.process.send_signal(signal.SIGTERM)
        stderr = supervisor.finish()
    finally:
        supervisor.kill()
    died = [line for line in stderr.splitlines() if f"worker 0 (pid {pids[0]})" in line]
    assert len(died) == 1
    assert "exited with -9 (killed by SIGKILL)" in died[0]
    assert "restarting it in 1 s (restart 1 of this worker, 1 in all)" in died[0]
    # every worker's own lines name it and its pid; the restarted one its new pid
    for index, pid in {**pids, 0: new_pid}.items():
        assert f"worker-{index}[{pid}] [idle] arroyo.block: started:" in stderr
    assert stderr.count("exited with 0") == 3  # all three stopped cleanly on SIGTERM
    assert "workers stopped: 3 of 3 ended cleanly; restarts: worker 0: 1" in stderr
    assert f"supervisor[{supervisor.process.pid}]" in stderr
    assert supervisor.process.returncode == 1  # a worker died: the run did not end well


@pytest.mark.timeout(120)
def test_crashing_workers_are_restarted_later_each_time_until_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "missing.yaml"
    # The file is not there: each worker fails as soon as its block starts.
    config.write_text(f"blocks:\n  - name: replay\n    listener: file://{tmp_path}/nope.avro\n")
    supervisor = Supervisor(config, 2)
    try:
        again = "restarting it in 2 s (restart 2 of this worker"
        wait_for(lambda: supervisor.count(again) == 2, what="both waiting 2 s")
        supervisor.process.send_signal(signal.SIGTERM)
        stderr = supervisor.finish()
    finally:
        supervisor.kill()
    for index in (0, 1):
        mine = [line for line in stderr.splitlines() if f"arroyo.cli: worker {index} " in line]
        assert "exited with 1 after" in mine[1]
        assert "restarting it in 1 s (restart 1 of this worker" in mine[1]
        assert "restarted (pid" in mine[2]
        assert "restarting it in 2 s (restart 2 of this worker" in mine[3]
    after_signal = stderr.split("received SIGTERM: stopping the workers", 1)[1]
    assert "restarted (pid" not in after_signal  # nothing starts once stopping
    assert re.search(r"restarts: worker 0: \d+, worker 1: \d+", stderr)
    assert supervisor.process.returncode == 1


@pytest.mark.timeout(120)
def test_ctrl_c_stops_every_worker_gracefully_once(tmp_path: Path) -> None:
    """A terminal's Ctrl-C goes to the whole foreground process group: each worker must
    get one SIGINT (from the supervisor), not two, which would cut its drain short."""
    config = tmp_path / "idle.yaml"
    config.write_text(IDLE)
    supervisor = Supervisor(config, 2, new_session=True)
    try:
        wait_for(lambda: supervisor.count("started: memory://nothing") == 2, what="workers up")
        os.killpg(supervisor.process.pid, signal.SIGINT)  # as the terminal does
        stderr = supervisor.finish()
    finally:
        supervisor.kill()
    assert stderr.count("received SIGINT: stopping gracefully") == 2, stderr
    assert "again" not in stderr
    assert stderr.count("exited with 0") == 2
    assert "workers stopped: 2 of 2 ended cleanly; restarts: none" in stderr
    assert supervisor.process.returncode == 0


@pytest.mark.timeout(120)
def test_workers_that_end_by_themselves_are_not_restarted(tmp_path: Path) -> None:
    source = tmp_path / "run.avro"
    write_avro(source)
    config = tmp_path / "replay.yaml"
    config.write_text(f"blocks:\n  - name: replay\n    listener: file://{source}\n")
    supervisor = Supervisor(config, 2)
    try:
        stderr = supervisor.finish()
    finally:
        supervisor.kill()
    assert stderr.count("exited with 0: its blocks ended; not restarted") == 2
    assert "restarted" not in stderr.replace("not restarted", "")
    assert supervisor.process.returncode == 0


@pytest.mark.timeout(120)
def test_workers_do_not_outlive_a_killed_supervisor(tmp_path: Path) -> None:
    config = tmp_path / "idle.yaml"
    config.write_text(IDLE)
    supervisor = Supervisor(config, 2)
    try:
        wait_for(lambda: supervisor.count("started: memory://nothing") == 2, what="workers up")
        pids = list(supervisor.pids(STARTED).values())
        supervisor.process.kill()
        supervisor.process.wait()
        wait_for(lambda: not any(alive(pid) for pid in pids), what="workers gone")
    finally:
        supervisor.kill()
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_backoff_doubles_up_to_a_maximum_and_starts_again_after_a_stable_run() -> None:
    backoff = Backoff(initial=1.0, maximum=30.0, stable=60.0)
    assert [backoff.delay(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    now = [1000.0]
    supervisor = SupervisorLoop(lambda index: ["true"], 1, backoff, clock=lambda: now[0])
    worker = supervisor.workers[0]
    delays = []
    for ran in (0.5, 0.5, 0.5, 61.0, 0.5):
        worker.process = subprocess.Popen(["true"])
        worker.process.wait()
        worker.started = now[0] - ran
        supervisor._ended(worker, 1)
        assert worker.due is not None
        delays.append(worker.due - now[0])
    assert delays == [1, 2, 4, 1, 2]  # a run of 61 s (over 60) started the count again
    assert worker.restarts == 5


def write_avro(path: Path) -> None:
    run = Run("scan-1")

    async def archive() -> None:
        async with FilePublisher(path) as publisher:
            for message in [run.start({}), run.event({"frame": 0}), run.stop({})]:
                await publisher.publish(message)

    asyncio.run(archive())


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


@pytest.mark.timeout(60)
def test_metrics_host_is_the_address_the_metrics_server_listens_on(tmp_path: Path) -> None:
    import urllib.request

    port = free_port()
    config = tmp_path / "idle.yaml"
    config.write_text(IDLE)
    worker = subprocess.Popen(
        [*ARROYO_RUN, str(config), "--metrics-port", str(port), "--metrics-host", "127.0.0.2"],
        stderr=subprocess.PIPE,
        text=True,
    )

    def answers(host: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=1) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    try:
        wait_for(lambda: answers("127.0.0.2"), what="metrics served on 127.0.0.2")
        assert not answers("127.0.0.1")  # that address only
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0
    assert f"metrics on http://127.0.0.2:{port}/metrics" in stderr


@pytest.mark.timeout(60)
def test_log_format_json_gives_one_object_per_line_in_every_process(tmp_path: Path) -> None:
    import json

    config = tmp_path / "idle.yaml"
    config.write_text(IDLE)
    supervisor = subprocess.Popen(
        [*ARROYO_RUN, str(config), "--workers", "2", "--log-format", "json"],
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    assert supervisor.stderr is not None
    started: set[str] = set()
    lines: list[str] = []
    while len(started) < 2:
        line = supervisor.stderr.readline()
        assert line, f"ended early: {lines}"
        lines.append(line)
        entry = json.loads(line)
        if entry["message"].startswith("started:"):
            started.add(entry["worker"])
    supervisor.send_signal(signal.SIGTERM)
    _, rest = supervisor.communicate(timeout=30)
    assert supervisor.returncode == 0
    entries = [json.loads(line) for line in lines + rest.splitlines()]
    assert started == {"worker-0", "worker-1"}
    assert {e["worker"] for e in entries} == {"supervisor", "worker-0", "worker-1"}
    assert {e["block"] for e in entries if e["message"].startswith("started:")} == {"idle"}


def test_log_format_json_reports_a_bad_config_as_a_json_line(tmp_path: Path) -> None:
    import json

    config = tmp_path / "bad.yaml"
    config.write_text("blocks:\n  - name: idle\n    listener: memory://nothing\n    publisher: x\n")
    done = subprocess.run(
        [*ARROYO_RUN, str(config), "--log-format", "json"], capture_output=True, text=True
    )
    assert done.returncode == 2
    (entry,) = [json.loads(line) for line in done.stderr.splitlines()]
    assert entry["level"] == "ERROR"
    assert entry["message"].startswith(f"error: {config}")
    assert "unknown key 'publisher'" in entry["message"]


@pytest.mark.timeout(60)
def test_the_metrics_endpoint_shows_the_listener_connected(tmp_path: Path) -> None:
    """``--lag-interval`` sets how often the connection (and lag) gauges are refreshed;
    the endpoint shows the listener connected once its Block runs."""
    import urllib.request

    port = free_port()
    config = tmp_path / "idle.yaml"
    config.write_text("blocks:\n  - name: idle\n    listener: memory://nothing\n")
    worker = subprocess.Popen(
        [*ARROYO_RUN, str(config), "--metrics-port", str(port), "--lag-interval", "0.1"],
        stderr=subprocess.DEVNULL,
    )
    line = 'arroyo_connected{block="idle",connector="memory://nothing",role="listener"} 1.0'

    def connected() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as reply:
                return line in reply.read().decode()
        except OSError:
            return False

    try:
        wait_for(connected, what="the listener connected on /metrics")
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
