"""Logging helpers: the block name on every record, and no password in any of them;
lines for people (``text``) or one JSON object per line for log collectors (``json``)."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

from arroyo.runtime import tracing

LogFormatName = Literal["text", "json"]

current_block: ContextVar[str] = ContextVar("arroyo_block", default="-")
"""The name of the Block whose task is running (set by Block.run for all its tasks)."""


class BlockFilter(logging.Filter):
    """Adds ``record.block``, the name of the Block that logged it ("-" outside a Block)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "block"):
            record.block = current_block.get()
        return True


_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^@/\s]*)@")
_SECRET_PARAM = re.compile(
    r"(?P<key>[?&;](?:[\w.-]*(?:password|secret|token|key)[\w.-]*))=(?P<value>[^&;\s]*)",
    re.IGNORECASE,
)


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with passwords in URLs (``user:***@``), secret query values, and each of
    ``secrets`` (passwords given as options) hidden as ``***``."""
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _SECRET_PARAM.sub(lambda m: f"{m['key']}=***", text)


_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""What a line must not print as it is: C0 and C1 controls (newlines, terminal escape
sequences), Unicode line separators and bidirectional overrides."""


def printable(text: str) -> str:
    """``text`` with every control character escaped (``\\x1b``, ``\\n``, ``\\u202e``), so
    that what a message carries (a stream name, an id, a source coordinate, a reason)
    cannot break a line of ``arroyo tail`` or of the log, fake one, move the cursor or
    restyle the terminal."""
    return _CONTROLS.sub(_escape, text)


def _escape(found: re.Match[str]) -> str:
    return repr(found.group())[1:-1]


WORKER_ENV = "ARROYO_WORKER"
"""The environment variable ``arroyo run --workers N`` sets in each worker process: its
index, 0 to N-1."""


def process_tag(role: str | None = None) -> str:
    """Who writes the log lines of this process: ``worker-2[4321]`` in worker 2 of
    ``arroyo run --workers`` (from :data:`WORKER_ENV`), ``ROLE[PID]`` when given a role,
    and "" in a process that runs alone."""
    if role is None:
        worker = os.environ.get(WORKER_ENV)
        if worker is None:
            return ""
        role = f"worker-{worker}"
    return f"{role}[{os.getpid()}]"


class TextFormatter(logging.Formatter):
    """A log line for people: the record's line with its control characters escaped
    (:func:`printable`), so each record stays one line; a traceback follows it as it is."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ``time`` (UTC, ISO 8601 with
    milliseconds), ``level``, ``block``, ``worker`` (``worker-2``, ``supervisor``, or
    null in a process that runs alone), ``pid``, ``logger``, ``message``, ``error``
    (the traceback) when the record has one, and with tracing on
    (:mod:`arroyo.runtime.tracing`) ``trace_id`` and ``span_id`` (hex) of the span the
    record was logged in (processing a message), when there is one."""

    def __init__(self, role: str | None = None) -> None:
        super().__init__()
        if role is None:
            worker = os.environ.get(WORKER_ENV)
            role = None if worker is None else f"worker-{worker}"
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, object] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "block": getattr(record, "block", "-"),
            "worker": self.role,
            "pid": record.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["error"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        if tracing.on:
            ids = tracing.current_ids()
            if ids is not None:
                entry["trace_id"], entry["span_id"] = ids
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(
    level: int = logging.INFO, role: str | None = None, format: LogFormatName = "text"
) -> None:
    """Log to stderr as ``time level [block] logger: message``; in a worker of ``arroyo
    run --workers`` (or with a ``role``, such as "supervisor"), the worker and its pid
    come before the block: ``time level worker-2[4321] [block] logger: message``.
    ``format="json"``: one JSON object per line instead (:class:`JsonFormatter`)."""
    handler = logging.StreamHandler()
    handler.addFilter(BlockFilter())
    if format == "json":
        handler.setFormatter(JsonFormatter(role))
    else:
        tag = process_tag(role).replace("%", "%%")
        handler.setFormatter(
            TextFormatter(
                "%(asctime)s %(levelname)-7s "
                + (f"{tag} " if tag else "")
                + "[%(block)s] %(name)s: %(message)s"
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def line_now(level: int, logger: str, message: str) -> str:
    """``message`` as the configured log handler would write it (a line, with its
    newline), made without taking any lock: for a thread that must write to stderr
    whatever the other threads hold (``os.write``)."""
    record = logging.LogRecord(logger, level, __file__, 0, message, None, None)
    record.block = "-"
    handlers = logging.getLogger().handlers
    formatter = handlers[0].formatter if handlers else None
    if formatter is None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        return f"{stamp} {logging.getLevelName(level):7} [-] {logger}: {message}\n"
    return formatter.format(record) + "\n"


class Throttle:
    """Logs the first of a burst of similar events, then at most one line per ``interval``
    seconds per key, saying how many were left out (an outage is one line, not a storm).
    :meth:`flush` logs the count of what was left out since (at the end of a Block)."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}
        self._latest: dict[str, tuple[logging.Logger, int, str, tuple[object, ...]]] = {}

    def __call__(
        self, logger: logging.Logger, level: int, key: str, message: str, *args: object
    ) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._skipped[key] = self._skipped.get(key, 0) + 1
            self._latest[key] = (logger, level, message, args)
            return
        if len(self._last) > 1000:  # keys made of error texts: do not grow without bound
            self.flush()
            self._last.clear()
        skipped = self._skipped.pop(key, 0)
        self._latest.pop(key, None)
        if skipped and last is not None:
            message += " (and %d more like it in the last %.0f s)"
            args = (*args, skipped, now - last)
        self._last[key] = now
        logger.log(level, message, *args)

    def flush(self) -> None:
        """Log, for each key, the latest event left out, with how many were left out since
        the last line (nothing when none was)."""
        now = time.monotonic()
        for key, skipped in list(self._skipped.items()):
            logger, level, message, args = self._latest.pop(key)
            since = now - self._last.get(key, now)
            logger.log(level, message + " (%d like it in the last %.0f s)", *args, skipped, since)
        self._skipped.clear()
        self._latest.clear()
