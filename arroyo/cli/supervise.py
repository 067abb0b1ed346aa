"""``arroyo run --workers N``: N worker processes, restarted when they die.

Restart policy, as process managers have it: a worker that dies (a signal, or an exit
code other than 0) while the supervisor is not shutting down is started again after a
delay that doubles with each quick failure (1 s, 2 s, 4 s... at most 30 s) and goes
back to 1 s once a worker has run for a minute. Every restart is logged with the
worker's index and pids and counted. A worker that exits with 0 (its blocks ended) is
not restarted. On SIGTERM/SIGINT the supervisor passes the signal on to every worker,
restarts nothing more, and waits for them all.

Exit code: 0 when every worker ended cleanly (0) and none had to be restarted; 1 when a
worker ended with an error or was restarted at some point (the last log line counts
the restarts per worker), so a crash is never hidden by a clean shutdown later.

Workers run in a process group of their own, so a Ctrl-C in the terminal reaches them
once, through the supervisor (not twice, which would cut their graceful stop short);
on Linux they get SIGTERM when the supervisor dies, so none outlives it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from arroyo.runtime.logs import WORKER_ENV

log = logging.getLogger("arroyo.cli")


@dataclass(frozen=True)
class Backoff:
    """How long to wait before restarting a worker that died.

    ``delay(n)`` for the n-th quick failure in a row (0 for the first): ``initial``
    doubled n times, at most ``maximum``. A worker that ran ``stable`` seconds or more
    before dying starts the count again."""

    initial: float = 1.0
    maximum: float = 30.0
    stable: float = 60.0

    def delay(self, failures_in_a_row: int) -> float:
        """Seconds to wait before the next start."""
        return float(min(self.maximum, self.initial * 2 ** min(failures_in_a_row, 32)))


def how_it_ended(code: int) -> str:
    """``exited with 3``, ``exited with -9 (killed by SIGKILL)``."""
    text = f"exited with {code}"
    if code < 0:
        try:
            text += f" (killed by {signal.Signals(-code).name})"
        except ValueError:
            text += f" (killed by signal {-code})"
    return text


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    failures_in_a_row: int = 0
    due: float | None = None  # when to start it again (after a failure)
    last_code: int | None = None
    pids: list[int] = field(default_factory=list)


def _die_with_parent() -> Callable[[], None] | None:
    """What a worker runs between fork and exec so that it gets SIGTERM when the
    supervisor dies (Linux's PR_SET_PDEATHSIG), and no worker is left behind by a
    supervisor that was killed; None elsewhere. Looked up here, in the parent: the child
    only makes the call (no import, no lock between fork and exec)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig, sigterm = 1, int(signal.SIGTERM)
    return lambda: prctl(pr_set_pdeathsig, sigterm)


class Supervisor:
    """Runs ``command(index)`` for each worker index and keeps them running (see the
    module docstring for the policy). ``clock`` and ``poll`` are for tests."""

    def __init__(
        self,
        command: Callable[[int], Sequence[str]],
        workers: int,
        backoff: Backoff | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        poll: float = 0.2,
    ) -> None:
        self.command = command
        self.workers = [_Worker(i) for i in range(workers)]
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.poll = poll
        self.stopping = False
        self._in_child = _die_with_parent()

    def _start(self, worker: _Worker) -> None:
        if self.stopping:
            return
        env = {**os.environ, WORKER_ENV: str(worker.index)}
        worker.process = subprocess.Popen(
            list(self.command(worker.index)),
            env=env,
            process_group=0,
            preexec_fn=self._in_child,
        )
        if self._told_to_stop():  # the signal came while it was being started
            worker.process.send_signal(signal.SIGTERM)
        worker.started = self.clock()
        worker.due = None
        worker.pids.append(worker.process.pid)
        if worker.restarts:
            log.warning(
                "worker %d restarted (pid %d; restart %d of this worker)",
                worker.index,
                worker.process.pid,
                worker.restarts,
            )
        else:
            log.info("worker %d started (pid %d)", worker.index, worker.process.pid)

    def _told_to_stop(self) -> bool:
        """``stopping`` as it is now (a signal handler may have set it meanwhile)."""
        return self.stopping

    def stop(self, signum: int) -> None:
        """Pass ``signum`` on to every running worker; restart nothing from now on."""
        if not self.stopping:
            log.info("received %s: stopping the workers", signal.Signals(signum).name)
        self.stopping = True
        for worker in self.workers:
            worker.due = None
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(signum)

    def _ended(self, worker: _Worker, code: int) -> None:
        assert worker.process is not None
        pid, ran = worker.process.pid, self.clock() - worker.started
        worker.process, worker.last_code = None, code
        if self.stopping or code == 0:
            level = logging.INFO if code == 0 else logging.ERROR
            why = "" if self.stopping else ": its blocks ended; not restarted"
            log.log(level, "worker %d (pid %d) %s%s", worker.index, pid, how_it_ended(code), why)
            return
        if ran >= self.backoff.stable:
            worker.failures_in_a_row = 0
        delay = self.backoff.delay(worker.failures_in_a_row)
        worker.failures_in_a_row += 1
        worker.restarts += 1
        worker.due = self.clock() + delay
        log.error(
            "worker %d (pid %d) %s after %.1f s; restarting it in %g s (restart %d of this "
            "worker, %d in all)",
            worker.index,
            pid,
            how_it_ended(code),
            ran,
            delay,
            worker.restarts,
            sum(w.restarts for w in self.workers),
        )

    def run(self) -> int:
        """Start the workers, keep them running until a signal (or until every one ended
        by itself), and return the exit code (see the module docstring)."""
        previous = {s: signal.signal(s, lambda n, f: self.stop(n)) for s in _SIGNALS}
        try:
            for worker in self.workers:
                self._start(worker)
            while any(w.process is not None or w.due is not None for w in self.workers):
                for worker in self.workers:
                    if worker.process is not None and (code := worker.process.poll()) is not None:
                        self._ended(worker, code)
                    if worker.due is not None and self.clock() >= worker.due:
                        self._start(worker)
                time.sleep(self.poll)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return self._summary()

    def _summary(self) -> int:
        restarts = {w.index: w.restarts for w in self.workers if w.restarts}
        clean = all(w.last_code == 0 for w in self.workers if w.pids)  # started ones
        counted = ", ".join(f"worker {i}: {n}" for i, n in restarts.items()) or "none"
        ended = sum(w.last_code == 0 for w in self.workers)
        level = logging.INFO if clean and not restarts else logging.ERROR
        log.log(
            level,
            "workers stopped: %d of %d ended cleanly; restarts: %s",
            ended,
            len(self.workers),
            counted,
        )
        return 0 if clean and not restarts else 1


_SIGNALS = (signal.SIGTERM, signal.SIGINT)
