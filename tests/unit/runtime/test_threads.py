"""The thread pool of blocking operators: a hung call's thread can be left behind."""

from __future__ import annotations

import threading

from arroyo.runtime.threads import AbandonablePool


def test_an_abandoned_call_is_replaced_and_never_waited_for() -> None:
    pool = AbandonablePool(1, "test")
    hang, started = threading.Event(), threading.Event()
    threads: list[threading.Thread] = []

    def hung() -> str:
        threads.append(threading.current_thread())
        started.set()
        hang.wait()
        return "late"

    try:
        stuck = pool.submit(hung)
        assert started.wait(10)
        queued = pool.submit(lambda: "next")
        assert not queued.done()  # the only thread is busy
        assert pool.abandon(stuck)
        assert queued.result(10) == "next"  # another thread took its place
        assert not pool.abandon(stuck)  # once is enough
        assert pool.running() == []  # the abandoned call is not waited for
        pool.shutdown(wait=True)  # returns although the hung call still runs
        assert not stuck.done()
        assert all(t.daemon for t in threading.enumerate() if t.name.startswith("test-"))
    finally:
        hang.set()
    assert stuck.result(10) == "late"
    [thread] = threads
    thread.join(10)  # it logs that it ends: before the test's log capture closes
    assert not thread.is_alive()


def test_shutdown_cancels_what_has_not_started() -> None:
    pool = AbandonablePool(1, "test-cancel")
    gate = threading.Event()
    first = pool.submit(gate.wait)
    second = pool.submit(lambda: None)
    pool.shutdown(wait=False, cancel_futures=True)
    gate.set()
    assert first.result(10) is True
    assert second.cancelled()
