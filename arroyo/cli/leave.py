"""How a worker process ends: with its exit code, even when a thread is stuck.

At interpreter exit Python waits for every thread that is not a daemon, among them the
threads of the executors that run broker client calls. A call that never returns (for
one, librdkafka's send_offsets_to_transaction waiting for a group coordinator that died
with its broker: confluentinc/librdkafka#5456, #5511) would keep the process alive for
ever after its blocks ended, so that no supervisor ever starts it again. The console
script (:func:`arroyo.cli.main`) arms :func:`watchdog` as it exits: should the exit not
be over within a grace period, it ends the process with the same code. (Not in the
commands themselves: tests run them inside their own process.)
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

log = logging.getLogger("arroyo.cli")

GRACE = 15.0
"""Seconds the normal exit may take once the blocks have ended."""


def watchdog(code: int, grace: float | None = None) -> None:
    """Start a daemon thread that, should the process still run ``grace`` seconds (GRACE
    by default) from now (a thread that does not end), logs the threads still running
    and ends the process at once with ``code`` (os._exit, logs and output flushed)."""
    grace = GRACE if grace is None else grace

    def end() -> None:
        time.sleep(grace)
        names = sorted(
            t.name
            for t in threading.enumerate()
            if t not in (threading.current_thread(), threading.main_thread())
            and t.is_alive()
            and not t.daemon
        )
        log.error(
            "exit took more than %g s (threads still running: %s; a call into a client "
            "library that does not return): ending the process with exit code %d",
            grace,
            ", ".join(names) or "none",
            code,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    threading.Thread(target=end, name="arroyo-exit-watchdog", daemon=True).start()


def exit_code(stop: SystemExit) -> int:
    """The process exit code a SystemExit stands for."""
    if stop.code is None:
        return 0
    return stop.code if isinstance(stop.code, int) else 1
