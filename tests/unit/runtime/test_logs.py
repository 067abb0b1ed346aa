"""No password ever reaches a log line or an error message."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator

import pytest

from arroyo.runtime.logs import BlockFilter, current_block, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("amqp://guest:s3cret@host:5672/vh?queue=q", "amqp://guest:***@host:5672/vh?queue=q"),
        ("redis://:s3cret@127.0.0.1:6379/frames", "redis://:***@127.0.0.1:6379/frames"),
        (
            "kafka://h:9092/t?sasl.password=s3cret&group=g",
            "kafka://h:9092/t?sasl.password=***&group=g",
        ),
        (
            "failed: rediss://u:p%40ss@h/s and amqps://a:b@c/",
            "failed: rediss://u:***@h/s and amqps://a:***@c/",
        ),
        ("kafka://127.0.0.1:9092/frames", "kafka://127.0.0.1:9092/frames"),
    ],
)
def test_redact_hides_passwords(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_hides_the_secrets_it_is_given_longest_first() -> None:
    text = "AUTH failed for pw-long-secret (also tried pw-long)"
    assert redact(text, "pw-long", None, "pw-long-secret") == "AUTH failed for *** (also tried ***)"


def test_records_carry_the_block_name() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    token = current_block.set("workers")
    try:
        BlockFilter().filter(record)
    finally:
        current_block.reset(token)
    assert record.block == "workers"  # type: ignore[attr-defined]


def test_repeated_events_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    from arroyo.runtime.logs import Throttle

    logger = logging.getLogger("arroyo.test")
    throttle = Throttle(interval=3600)
    with caplog.at_level(logging.WARNING, logger="arroyo.test"):
        for _ in range(5):
            throttle(logger, logging.WARNING, "down", "%s: %s", "kafka://h/t", "1/1 brokers down")
        throttle(logger, logging.WARNING, "other", "%s: %s", "kafka://h/t", "another problem")
    assert [r.getMessage() for r in caplog.records] == [
        "kafka://h/t: 1/1 brokers down",
        "kafka://h/t: another problem",
    ]
    throttle.interval = 0
    with caplog.at_level(logging.WARNING, logger="arroyo.test"):
        throttle(logger, logging.WARNING, "down", "%s: %s", "kafka://h/t", "1/1 brokers down")
    assert "(and 4 more like it in the last" in caplog.records[-1].getMessage()


@pytest.mark.parametrize(
    ("worker", "role", "tag"),
    [("2", None, "worker-2[{pid}] "), (None, "supervisor", "supervisor[{pid}] "), (None, None, "")],
)
def test_lines_name_the_worker_and_pid_that_wrote_them(
    monkeypatch: pytest.MonkeyPatch, worker: str | None, role: str | None, tag: str
) -> None:
    import os

    from arroyo.runtime.logs import configure

    if worker is None:
        monkeypatch.delenv("ARROYO_WORKER", raising=False)
    else:
        monkeypatch.setenv("ARROYO_WORKER", worker)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure(logging.INFO, role=role)
        (handler,) = root.handlers
        record = logging.LogRecord("arroyo.kafka", logging.WARNING, __file__, 1, "m", None, None)
        handler.filter(record)
        line = handler.format(record)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    assert line.endswith(f" WARNING {tag.format(pid=os.getpid())}[-] arroyo.kafka: m")


def test_what_was_left_out_is_counted_at_the_end(caplog: pytest.LogCaptureFixture) -> None:
    from arroyo.runtime.logs import Throttle

    logger = logging.getLogger("arroyo.test")
    throttle = Throttle(interval=3600)
    with caplog.at_level(logging.WARNING, logger="arroyo.test"):
        for i in range(1000):
            throttle(logger, logging.ERROR, "too-large", "could not publish frame %d", i)
        throttle.flush()
        throttle.flush()  # nothing more to say
    assert [r.getMessage() for r in caplog.records] == [
        "could not publish frame 0",
        "could not publish frame 999 (999 like it in the last 0 s)",
    ]
    assert caplog.records[-1].levelno == logging.ERROR


@pytest.fixture
def root_handlers(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    """Give the root logger back as it was after a test that calls configure(), before
    the captured stderr its handler writes to is closed."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_format_writes_one_object_per_line(
    root_handlers: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from arroyo.runtime.logs import WORKER_ENV, configure

    monkeypatch.setenv(WORKER_ENV, "2")
    configure(format="json")
    logger = logging.getLogger("arroyo.block")
    token = current_block.set("workers")
    try:
        logger.info("started: %s", "kafka://h:9092/frames")
        try:
            raise ValueError("detector saturated\nsecond line")
        except ValueError:
            logger.exception("operator failed")
    finally:
        current_block.reset(token)
    logger.warning("outside a block")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3, lines
    first, second, third = (json.loads(line) for line in lines)
    assert set(first) == {"time", "level", "block", "worker", "pid", "logger", "message"}
    assert first["level"] == "INFO"
    assert first["block"] == "workers"
    assert first["worker"] == "worker-2"
    assert first["pid"] == os.getpid()
    assert first["logger"] == "arroyo.block"
    assert first["message"] == "started: kafka://h:9092/frames"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert second["level"] == "ERROR"
    assert second["message"] == "operator failed"
    assert "ValueError: detector saturated\nsecond line" in second["error"]
    assert third["block"] == "-"
    assert third["message"] == "outside a block"


def test_json_format_names_the_role_or_no_worker(
    root_handlers: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from arroyo.runtime.logs import WORKER_ENV, configure

    monkeypatch.delenv(WORKER_ENV, raising=False)
    configure(format="json")
    logging.getLogger("arroyo.cli").info("alone")
    configure(format="json", role="supervisor")
    logging.getLogger("arroyo.cli").info("supervising")
    alone, supervising = map(json.loads, capsys.readouterr().err.splitlines())
    assert alone["worker"] is None
    assert supervising["worker"] == "supervisor"


def test_line_now_follows_the_configured_format(root_handlers: None) -> None:
    from arroyo.runtime.logs import configure, line_now

    configure(format="json")
    line = line_now(logging.ERROR, "arroyo.block", "still running 45 s after SIGTERM")
    assert line.endswith("\n")
    entry = json.loads(line)
    assert (entry["level"], entry["block"], entry["message"]) == (
        "ERROR",
        "-",
        "still running 45 s after SIGTERM",
    )
    configure()
    text = line_now(logging.ERROR, "arroyo.block", "still running")
    assert re.fullmatch(r"\S+ \S+ ERROR   \[-\] arroyo.block: still running\n", text)


def test_a_text_line_escapes_what_a_message_carries_and_keeps_the_traceback(
    root_handlers: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from arroyo.runtime.logs import configure

    configure(format="text")
    logger = logging.getLogger("arroyo.block")
    crafted = "e1\n2026-12-03 06:00:00,000 ERROR   [-] arroyo.block: forged\x1b[2J"
    logger.warning("could not publish event %s", crafted)
    try:
        raise ValueError("detector saturated")
    except ValueError:
        logger.exception("operator failed on %s", "stream\r")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith(
        "could not publish event e1\\n2026-12-03 06:00:00,000 ERROR   [-] arroyo.block: "
        "forged\\x1b[2J"
    )
    assert lines[1].endswith("operator failed on stream\\r")
    assert lines[2] == "Traceback (most recent call last):"  # the traceback, line by line
    assert lines[-1] == "ValueError: detector saturated"
    assert not any("\x1b" in line or "\r" in line for line in lines)
