"""``arroyo tail`` on ZeroMQ: a subscriber shows what a publisher sends; PULL is refused."""

from __future__ import annotations

from typing import Any

from arroyo import Run
from arroyo.brokers import open_publisher
from arroyo.testing import free_port


def test_zmq_pull_is_refused_in_one_line(tail_cli: Any) -> None:
    done = tail_cli.run("zmq+pull://127.0.0.1:5555")
    assert done.returncode == 2
    [error] = done.stderr.strip().splitlines()
    assert "a PULL socket takes each message away from the receiver" in error


async def test_zmq_sub_shows_what_a_publisher_sends(tail_cli: Any) -> None:
    port = free_port()
    publisher = open_publisher(f"zmq+pub://127.0.0.1:{port}?bind=true")
    await publisher.start()
    frame = Run("zmq-scan").start({"n": 1})
    try:
        line = await tail_cli.first_new(
            f"zmq+sub://127.0.0.1:{port}", publish=lambda: publisher.publish(frame)
        )
    finally:
        await publisher.close()
    assert (line["kind"], line["id"]) == ("start", frame.id)
