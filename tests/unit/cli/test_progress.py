"""The status line of ``arroyo run`` and ``arroyo bridge``: on a terminal only, redrawn
about once a second, never on the same line as a log line."""

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

import numpy as np
import pytest

from arroyo import Run
from arroyo.brokers.file import FilePublisher

ARROYO = [sys.executable, "-m", "arroyo"]
STATUS = re.compile(
    r"received (\d+) \([\d.]+ MB\)  published (\d+)  acked (\d+)  dead-lettered (\d+)  "
    r"dropped (\d+)  \|  \d+ msg/s  [\d.]+ MB/s  \|  queue (\d+)/(\d+)"
)


class Terminal:
    """A command run on a pseudo-terminal (stdout and stderr both), its output kept."""

    def __init__(self, *arguments: str) -> None:
        master, slave = os.openpty()
        self.process = subprocess.Popen(
            [*ARROYO, *arguments], stdin=slave, stdout=slave, stderr=slave, close_fds=True
        )
        os.close(slave)
        self._master = master
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            self._chunks.append(chunk)

    @property
    def raw(self) -> str:
        return b"".join(self._chunks).decode(errors="replace")

    def wait_for(self, condition: object, within: float = 60) -> None:
        deadline = time.monotonic() + within
        while not condition():  # type: ignore[operator]
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"not seen in time:\n{self.raw!r}")
            time.sleep(0.05)

    def finish(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout)
        self._reader.join(10)
        os.close(self._master)
        return code

    def screen(self) -> list[str]:
        """The lines as a terminal shows them: \\r\\x1b[K erases the line."""
        lines = [""]
        for token in re.split(r"(\r\n|\n|\r\x1b\[K|\r)", self.raw):
            if token in ("\r\n", "\n"):
                lines.append("")
            elif token in ("\r\x1b[K", "\r"):
                lines[-1] = ""
            else:
                lines[-1] += token
        return [line for line in lines if line]


def write_run(path: Path, frames: int) -> None:
    run = Run("scan-7")
    messages = [run.start({}), *(run.array_event(np.zeros((8, 8), "<u2")) for _ in range(frames))]
    messages.append(run.stop({}))

    async def archive() -> None:
        async with FilePublisher(path) as publisher:
            for message in messages:
                await publisher.publish(message)

    asyncio.run(archive())


@pytest.mark.timeout(120)
def test_run_on_a_terminal_shows_a_status_line_about_once_a_second(tmp_path: Path) -> None:
    config = tmp_path / "idle.yaml"
    config.write_text("blocks:\n  - name: idle\n    listener: memory://nothing\n")
    terminal = Terminal("run", str(config))
    try:
        terminal.wait_for(lambda: len(STATUS.findall(terminal.raw)) >= 2)  # drawn, redrawn
        terminal.process.send_signal(signal.SIGINT)
        assert terminal.finish() == 0, terminal.raw
    finally:
        if terminal.process.poll() is None:
            terminal.process.kill()
    screen = terminal.screen()
    for line in screen:  # a log line and the status never share a line
        assert not (STATUS.search(line) and " arroyo." in line), line
    assert STATUS.fullmatch(screen[-1]), screen  # the last status stays, below the logs
    assert STATUS.fullmatch(screen[-1]).groups() == ("0", "0", "0", "0", "0", "0", "1000")  # type: ignore[union-attr]
    assert any("arroyo.block: stopped:" in line for line in screen[:-1])


@pytest.mark.timeout(120)
def test_bridge_on_a_terminal_ends_with_the_counts(tmp_path: Path) -> None:
    write_run(tmp_path / "in.avro", 5)
    terminal = Terminal(
        "bridge", f"file://{tmp_path}/in.avro", f"file://{tmp_path}/out.avro", "--queue-size", "9"
    )
    try:
        assert terminal.finish() == 0, terminal.raw
    finally:
        if terminal.process.poll() is None:
            terminal.process.kill()
    final = STATUS.fullmatch(terminal.screen()[-1])
    assert final is not None, terminal.raw
    assert final.groups() == ("7", "7", "7", "0", "0", "0", "9")


def test_no_status_line_when_stdout_is_not_a_terminal(tmp_path: Path) -> None:
    write_run(tmp_path / "in.avro", 5)
    result = subprocess.run(
        [*ARROYO, "bridge", f"file://{tmp_path}/in.avro", f"file://{tmp_path}/out.avro"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "msg/s" not in result.stderr
    assert "stopped: 7 received, 7 published" in result.stderr
