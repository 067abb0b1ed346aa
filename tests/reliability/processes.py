"""Killing a broker of the test's own and waiting until it is really gone."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, or no such process: False)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def accepts(address: str) -> bool:
    """True when ``HOST:PORT`` takes a TCP connection now."""
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def kill_broker(pid: int, address: str, what: str, within: float = 30) -> None:
    """SIGKILL ``pid``; return once it is dead and ``address`` accepts nothing (a killed
    JVM's threads may hold its sockets a moment after its pid looks gone)."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + within
    while alive(pid) or accepts(address):
        assert time.monotonic() < deadline, f"{what} (pid {pid}) up {within:g} s after SIGKILL"
        time.sleep(0.05)
