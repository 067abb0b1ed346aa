"""``send_runs``: a connector's ``send_many`` sends the messages between two that cannot
be prepared as one run each; one that cannot be prepared fails alone, or stops the batch
when a retry may cure it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from arroyo.errors import EncodeError, PublishError
from arroyo.message import Message
from arroyo.runtime.publisher import send_runs
from arroyo.testing import make_run


class Runs:
    """A connector's run sender: keeps each run; confirms each message at once, or
    fails the one at ``fail_at`` (counted over all runs) with ``error``."""

    def __init__(self, fail_at: int | None = None, error: Exception | None = None) -> None:
        self.runs: list[list[str]] = []
        self.fail_at, self.error = fail_at, error

    def __call__(self, run: list[str]) -> list[asyncio.Future[None]]:
        self.runs.append(run)
        sent: list[asyncio.Future[None]] = []
        for _ in run:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            sent.append(done)
            if len(sent) + sum(map(len, self.runs[:-1])) - 1 == self.fail_at:
                done.set_exception(self.error or PublishError("refused"))
                break  # as a producer that stops after a retryable failure
            done.set_result(None)
        return sent


def prepare_failing(
    *bad: int, error: type[Exception] = EncodeError
) -> Callable[[Message, bytes | None], str]:
    def prepare(message: Message, wire: bytes | None) -> str:
        if message.seq in bad:
            raise error(f"cannot encode seq {message.seq}")
        return f"m{message.seq}"

    return prepare


async def test_runs_between_unencodable_messages() -> None:
    messages = make_run(5)  # seq 0..6
    runs = Runs()
    sent = send_runs(messages, [None] * 7, prepare_failing(2, 4), runs)
    assert runs.runs == [["m0", "m1"], ["m3"], ["m5", "m6"]]
    assert len(sent) == 7
    assert [isinstance(f.exception(), EncodeError) for f in sent] == [
        False, False, True, False, True, False, False,
    ]  # fmt: skip


async def test_a_retryable_failure_to_prepare_stops_the_batch() -> None:
    messages = make_run(5)
    runs = Runs()
    sent = send_runs(messages, [None] * 7, prepare_failing(3, error=PublishError), runs)
    assert runs.runs == [["m0", "m1", "m2"]]
    assert len(sent) == 4
    assert isinstance(sent[3].exception(), PublishError)


async def test_a_run_the_connector_stopped_early_ends_the_batch() -> None:
    messages = make_run(5)
    runs = Runs(fail_at=1)
    sent = send_runs(messages, [None] * 7, prepare_failing(3), runs)
    assert runs.runs == [["m0", "m1", "m2"]]  # not the run after the unencodable one
    assert len(sent) == 2
    assert sent[0].result() is None
    assert isinstance(sent[1].exception(), PublishError)
