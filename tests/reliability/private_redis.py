"""A redis-server of the test's own (never the shared one), for tests that kill it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import redis

from arroyo.testing import free_port

__all__ = ["PrivateRedis"]


class PrivateRedis:
    """A redis-server of this test's own, persisted as ``compose/brokers.sh`` runs Redis:
    an append-only file, fsynced every second. Every write reaches the file (the kernel's
    page cache) before Redis replies, so a killed server loses nothing it confirmed; the
    fsync bounds what a crash of the machine loses to about a second."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir()
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server is not None
        self.process = subprocess.Popen(
            [
                server,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.folder),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--logfile",
                str(self.folder / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def answers(self) -> bool:
        try:
            with redis.Redis(port=self.port, socket_timeout=1) as probe:
                return bool(probe.ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
