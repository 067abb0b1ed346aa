"""Logging helpers: the block name on every record, and no password in any of them."""

from __future__ import annotations

import logging
import re
from contextvars import ContextVar

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


def redact(text: str) -> str:
    """``text`` with passwords in URLs (``user:***@``) and secret query values hidden."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _SECRET_PARAM.sub(lambda m: f"{m['key']}=***", text)


def configure(level: int = logging.INFO) -> None:
    """Log to stderr as ``time level [block] logger: message``."""
    handler = logging.StreamHandler()
    handler.addFilter(BlockFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s [%(block)s] %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
