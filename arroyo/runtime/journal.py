"""Delivery journal: which messages were being processed when their worker died.

A message that kills the process handling it (a segfault in compiled code, the kernel's
OOM killer) is delivered again to the next worker, which dies too. The Block stops such
a crash loop with ``max_deliveries``, but a delivery count is only useful if it says
which message killed the worker: Kafka keeps no count at all, and the counts of Redis
Streams and RabbitMQ go up for every message a dying worker held (a whole prefetched
batch), so a poison's innocent neighbours reach the limit with it.

The journal counts exactly the deliveries that ended in the death of the worker while
it was processing the message:

- Each worker process has a file of its own in the journal's folder (one folder per
  source: consumer group, stream, queue), locked (``flock``) for as long as it lives
  and memory-mapped. Before the Block processes a message (parses it and runs the
  operator), the message's key (its source coordinates, e.g. topic:partition:offset)
  is written into a slot of that file; the slot is cleared when processing returns.
  A store into a shared file mapping is in the kernel's page cache at once, so it
  survives SIGKILL or SIGSEGV of the process; no fsync (a crash of the machine is not
  a crash loop). Cost: about 2 microseconds per message, no system call.
- A file whose lock is free belongs to a worker that died. Any worker of the folder
  (at its start, then about every second, and at once when the broker says a message
  is a redelivery) adds one crash for every key in use in such a file to the folder's
  ``crashes.json`` (under a lock, written atomically: :mod:`arroyo.runtime.crashes`)
  and deletes the file. A worker
  that stops while it is still processing a message (the grace period ran out: it may
  hang every worker) counts it the same way.
- A message's ``deliveries`` is then 1 + its crashes, whatever the broker counted.
  The entry of a message that was acknowledged (or dead-lettered) is removed when its
  worker stops cleanly (after the listener's last commit: a Kafka offset is committed
  some time after the acknowledgement). Entries of messages never seen again (another
  machine took them) are dropped after a week.
- With ``concurrency`` above 1, a crash counts for every message the Block had started;
  each of them is then processed alone when it comes back, so that from then on only
  the one that kills workers is counted.

The folder is local: workers that share it (the workers of one machine, or a worker
restarted in place) count each other's crashes. A poison that kills workers on several
machines is dead-lettered once the workers of one of them died ``max_deliveries``
times on it.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from arroyo.errors import ConfigError
from arroyo.runtime.crashes import SLOT, SUFFIX, CrashCounts, Crashes
from arroyo.runtime.received import Received

log = logging.getLogger("arroyo.journal")

_INITIAL_SLOTS = 16
_REFRESH = 1.0
"""Seconds between two looks for the files of dead workers (while messages come in; the
clock is read every 64 messages)."""
_REFRESH_REDELIVERED = 0.05
"""The same when the broker says a message is a redelivery (a worker may just have died)."""

Key = Callable[[Received], "str | None"]
"""Gives the key of a received message: the same on every delivery of that message; None
when it has none (it is then not journaled)."""


def default_folder() -> Path:
    """``$XDG_STATE_HOME/arroyo/deliveries`` (``~/.local/state/arroyo/deliveries``; in
    the temporary folder when there is no home, as for a container's random user)."""
    state = os.environ.get("XDG_STATE_HOME")
    if not state:
        try:
            state = os.path.join(Path.home(), ".local", "state")
        except (RuntimeError, KeyError):
            user = os.getuid() if hasattr(os, "getuid") else "user"
            state = os.path.join(tempfile.gettempdir(), f"arroyo-{user}")
    return Path(state) / "arroyo" / "deliveries"


def from_option(value: Any, where: str, scope: str, key: Key) -> DeliveryJournal | None:
    """The journal a listener option ``delivery_journal`` asks for: ``""`` or ``true``
    (the default folder), a folder, or ``false``/``off`` (none)."""
    if value is False or (isinstance(value, str) and value.lower() in ("false", "off", "no")):
        return None
    if value is True or value == "" or value is None:
        return DeliveryJournal(default_folder(), scope, key, explicit=False)
    if not isinstance(value, str):
        raise ConfigError(
            f"{where}: delivery_journal must be a folder or false, got {type(value).__name__}"
        )
    return DeliveryJournal(Path(value).expanduser(), scope, key, explicit=True)


class DeliveryJournal:
    """Counts, per message key, the workers that died while processing it (see the
    module docstring). ``scope`` names the source (one folder per scope); ``key`` gives a
    received message's key. The Block calls :meth:`open`, then per message :meth:`start`
    before processing it, :meth:`finish` once processing returned (not when it was
    cancelled: see :meth:`close`) and :meth:`settled` once it is acknowledged, and
    :meth:`close` at the end. Not thread-safe: the Block's event loop calls it."""

    def __init__(self, root: Path, scope: str, key: Key, *, explicit: bool = True) -> None:
        self.root = root
        self.scope = scope
        self.key = key
        self.explicit = explicit
        self.folder = root / _folder_name(scope)
        self._counts = CrashCounts(root, self.folder, scope)
        self.crashes: Crashes = {}
        """key -> [crashes, time of the last one] (as in crashes.json)."""
        self._fd = -1
        self._map: mmap.mmap | None = None
        self._free: list[int] = []
        self._settled: set[str] = set()
        self._path: Path | None = None
        self._seen: tuple[int, int, int] | None = None
        self._next_refresh = 0.0
        self._soon = 0.0
        self._countdown = 0

    @property
    def active(self) -> bool:
        """True between a successful :meth:`open` and :meth:`close`."""
        return self._map is not None

    # -- the Block's side -----------------------------------------------------------

    def open(self) -> None:
        """Create this process's file and count the crashes of dead workers.

        Raises ConfigError when an explicitly given folder cannot be used; with the
        default folder, logs one warning and leaves the journal inactive instead.
        """
        try:
            self._start_file()
        except (OSError, ImportError) as exc:
            self._unusable(exc)
            return
        self.refresh()

    def start(self, received: Received) -> int:
        """``received`` is about to be processed: set its ``deliveries`` (1 + the
        crashes it caused) and record it as being processed. Returns the slot to give
        to :meth:`finish` (-1: not recorded)."""
        return self.start_many((received,))[0]

    def start_many(self, batch: Sequence[Received]) -> list[int]:
        """:meth:`start` each of ``batch``; their slots, in order."""
        memory = self._map
        if memory is None:
            return [-1] * len(batch)
        slots: list[int] = []
        for received in batch:
            key = self.key(received)
            if key is None:
                slots.append(-1)
                continue
            if len(key) > 60 or "\n" in key:
                key = _normal(key)
            self._countdown -= 1
            if self._countdown <= 0 or received.deliveries > 1:  # the clock now and then
                self._countdown = 64
                now = time.monotonic()
                if now >= self._next_refresh or (received.deliveries > 1 and now >= self._soon):
                    self.refresh()
            counted = self.crashes.get(key) if self.crashes else None
            received.deliveries = 1 + int(counted[0]) if counted else 1
            if not self._free:
                memory = self._grow()
            slot = self._free.pop()
            data = key.encode() + b"\n"
            at = slot * SLOT
            memory[at + 1 : at + 1 + len(data)] = data
            memory[at] = 1  # in use: written last, so a half-written key is never read
            slots.append(slot)
        return slots

    def finish(self, slot: int) -> None:
        """Processing of the message recorded in ``slot`` returned (in any way)."""
        self.finish_many((slot,))

    def finish_many(self, slots: Iterable[int]) -> None:
        """:meth:`finish` each of ``slots``."""
        memory, free = self._map, self._free
        if memory is None:
            return
        for slot in slots:
            if slot >= 0:
                memory[slot * SLOT] = 0
                free.append(slot)

    def look_again(self) -> None:
        """Look for the files of dead workers before the next message: the listener was
        just given work another worker had (new Kafka partitions)."""
        self._countdown = 0
        self._next_refresh = 0.0

    def suspect(self, received: Received) -> bool:
        """True when ``received`` was being processed when a worker died (so it must be
        processed alone to tell whether it is to blame)."""
        if not self.crashes or self._map is None:
            return False
        key = self._key(received)
        return key is not None and key in self.crashes

    def suspects(self, batch: Iterable[Received]) -> bool:
        """True when one of ``batch`` is :meth:`suspect` (checked only when a worker died)."""
        if not self.crashes or self._map is None:
            return False
        return any(map(self.suspect, batch))

    def settled(self, received: Received) -> None:
        """``received`` was acknowledged (processed or dead-lettered): its crashes are
        forgotten when this worker stops cleanly, once the listener has committed (a
        Kafka offset is committed after the acknowledgement: a crash before that
        delivers the message again, and its count must still be there)."""
        if not self.crashes or self._map is None:
            return
        key = self._key(received)
        if key is not None and key in self.crashes:
            self._settled.add(key)

    def close(self) -> None:
        """Remove this process's file; what it was still processing (abandoned at the
        end of the grace period: it may hang every worker) counts as a delivery, as a
        crash does; what it settled is forgotten. Remove the folder when nothing is left
        in it."""
        if self._map is None:
            return
        self._map.close()
        self._map = None
        try:
            with self._counts.locked():
                if self._path is not None:
                    crashes = self._counts.read()
                    before = {k: v[0] for k, v in crashes.items()}
                    in_use = self._counts.count(
                        self._path, crashes, "stopped while still processing"
                    )
                    for key in self._settled.difference(in_use):
                        crashes.pop(key, None)
                    if {k: v[0] for k, v in crashes.items()} != before:
                        self.crashes = self._counts.write(crashes)
                    self._path.unlink(missing_ok=True)
                left = os.listdir(self.folder)
                if not left:
                    self.folder.rmdir()
        except OSError as exc:
            log.warning("delivery journal %s: could not close: %s", self.folder, exc)
        os.close(self._fd)
        self._fd = -1
        self._settled.clear()

    def _key(self, received: Received) -> str | None:
        key = self.key(received)
        return None if key is None else _normal(key)

    # -- counting the crashes ----------------------------------------------------------

    def refresh(self) -> None:
        """Count the crashes of workers that died since the last look, and read the
        counts other workers wrote."""
        now = time.monotonic()
        self._next_refresh, self._soon = now + _REFRESH, now + _REFRESH_REDELIVERED
        try:
            counts = self._counts
            if counts.dead_files(self._path):
                with counts.locked():
                    crashes, dead = counts.read(), counts.dead_files(self._path)
                    for path in dead:
                        counts.count(path, crashes, "a worker died while processing")
                    self.crashes = counts.write(crashes)
                    for path in dead:
                        path.unlink(missing_ok=True)
            stat = counts.stat()
        except FileNotFoundError:
            self.crashes, self._seen = {}, None
            return
        except OSError as exc:
            log.warning("delivery journal %s: could not read: %s", self.folder, exc)
            return
        seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if seen != self._seen:
            self.crashes, self._seen = self._counts.read(), seen

    # -- files -------------------------------------------------------------------------

    def _start_file(self) -> None:
        """Create this process's file, lock and map it, and only then give it the name
        other workers look at (so they never take a live worker's file for a dead one's)."""
        import fcntl  # Unix only

        with self._counts.locked():
            hidden = self.folder / f".new-{uuid.uuid4().hex}"
            fd = os.open(hidden, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.ftruncate(fd, _INITIAL_SLOTS * SLOT)
                self._map = mmap.mmap(fd, _INITIAL_SLOTS * SLOT)
                path = self.folder / f"{os.getpid()}-{uuid.uuid4().hex[:12]}{SUFFIX}"
                os.rename(hidden, path)
            except BaseException:
                os.close(fd)
                hidden.unlink(missing_ok=True)
                self._map = None
                raise
        self._fd, self._path = fd, path
        self._free = list(range(_INITIAL_SLOTS - 1, -1, -1))

    def _grow(self) -> mmap.mmap:
        """Twice as many slots (the file and its mapping); the new mapping."""
        assert self._map is not None
        slots = len(self._map) // SLOT
        os.ftruncate(self._fd, 2 * slots * SLOT)
        self._map.close()
        self._map = mmap.mmap(self._fd, 2 * slots * SLOT)
        self._free.extend(range(2 * slots - 1, slots - 1, -1))
        return self._map

    def _unusable(self, exc: BaseException) -> None:
        text = f"delivery journal {self.folder} cannot be used: {exc}"
        if self.explicit:
            raise ConfigError(f"{text} (set delivery_journal to a folder this worker can write)")
        log.warning(
            "%s; messages that kill workers are counted only by the broker (set the "
            "listener's delivery_journal to a writable folder)",
            text,
        )


def _folder_name(scope: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", scope).strip("_")[:60]
    return f"{readable}-{hashlib.sha256(scope.encode()).hexdigest()[:12]}"


def _normal(key: str) -> str:
    """``key`` as the journal stores it: itself, or its SHA-256 when it does not fit a
    slot or has a newline."""
    if len(key.encode()) > SLOT - 2 or "\n" in key:
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key
