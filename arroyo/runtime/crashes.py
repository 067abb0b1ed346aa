"""The crash counts of a delivery journal's folder (see :mod:`arroyo.runtime.journal`).

``crashes.json`` holds, per message key, how many workers died while processing it and
when the last one did. The files of workers that died (their lock is free) are counted
into it and deleted. Every change is made under the lock of the journal's root (a file
never deleted) and written atomically.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("arroyo.journal")

SLOT = 256
"""Bytes per slot of a worker's file: a flag byte, then the key (UTF-8) and a newline."""

SUFFIX = ".inflight"
"""How a worker's file is named: ``<pid>-<random><SUFFIX>``."""

CRASHES = "crashes.json"

EXPIRE = 7 * 24 * 3600.0
"""Seconds after which the crash count of a message never seen again is dropped."""

Crashes = dict[str, list[float]]
"""key -> [crashes, time of the last one]."""


class CrashCounts:
    """The crash counts of the journal folder ``folder`` under ``root`` (``scope``
    names the source, in logs)."""

    def __init__(self, root: Path, folder: Path, scope: str) -> None:
        self.root = root
        self.folder = folder
        self.scope = scope

    def stat(self) -> os.stat_result:
        """``crashes.json``'s; raises FileNotFoundError when there is none."""
        return os.stat(self.folder / CRASHES)

    def dead_files(self, own: Path | None) -> list[Path]:
        """The files of the folder whose worker is gone (their lock is free), but ``own``."""
        import fcntl

        dead = []
        for name in os.listdir(self.folder):
            path = self.folder / name
            if not name.endswith(SUFFIX) or path == own:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # alive
            finally:
                os.close(fd)
            dead.append(path)
        return dead

    def count(self, path: Path, crashes: Crashes, how: str) -> list[str]:
        """Add one delivery to every key in use in the file ``path`` (a worker that
        died, or this one stopping while it was still processing them: ``how``); those
        keys."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        now, keys = time.time(), []
        for at in range(0, len(data) - SLOT + 1, SLOT):
            if data[at] == 1:
                keys.append(data[at + 1 : at + SLOT].split(b"\n", 1)[0].decode("utf-8", "replace"))
        for key in keys:
            entry = crashes.setdefault(key, [0, now])
            entry[0] += 1
            entry[1] = now
        if keys:
            counts = ", ".join(f"{k} ({int(crashes[k][0])} so far)" for k in keys[:5])
            more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
            log.warning("%s: %s %s%s", self.scope, how, counts, more)
        return keys

    def read(self) -> Crashes:
        """The counts in the folder's crashes.json (none when it is missing or damaged)."""
        try:
            raw = json.loads((self.folder / CRASHES).read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            log.warning("delivery journal %s: %s is damaged; starting afresh", self.folder, CRASHES)
            return {}
        return {str(k): [float(v[0]), float(v[1])] for k, v in raw.items()}

    def write(self, crashes: Crashes) -> Crashes:
        """Write ``crashes`` (atomically), without the entries older than a week; what
        was written."""
        now = time.time()
        crashes = {k: v for k, v in crashes.items() if now - v[1] < EXPIRE}
        path = self.folder / CRASHES
        if not crashes:
            path.unlink(missing_ok=True)
        else:
            temporary = self.folder / f".crashes-{uuid.uuid4().hex}"
            temporary.write_text(json.dumps(crashes))
            os.replace(temporary, path)
        return crashes

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the journal root's lock (never deleted, so it is always the same file)."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self.folder.mkdir(parents=True, exist_ok=True)
            yield
        finally:
            os.close(fd)
