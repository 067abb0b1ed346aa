"""Connecting when a connector starts: one option, a bounded wait, one line when it fails.

The Kafka, Redis and RabbitMQ connectors take ``connect_timeout`` (seconds, default 10):
how long starting (a publisher's ``start()``, the beginning of a listener's
``start()``) keeps trying to reach the broker. A broker that refuses the connection,
resets it or does not answer may be starting up, so it is tried again, with a growing
pause, until then. What a retry cannot mend (an untrusted certificate, a TLS client on a
plaintext port, refused credentials) fails at once. Either way the start fails with a
:class:`~arroyo.errors.ConnectError` of one line: the URL (password hidden), what
failed and, when it is known, what to change. Connections lost later are the
connector's business: they are waited out.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from arroyo.errors import ConnectError

T = TypeVar("T")

CONNECT_TIMEOUT = 10.0
"""Seconds a connector keeps trying to reach its broker when it starts (default)."""


_FIRST_PAUSE = 0.1
_LONGEST_PAUSE = 1.0


@dataclass(frozen=True)
class Failure:
    """Why one attempt to connect failed, in words.

    ``reason``: what happened; ``hint``: what to change, when known; ``final``: trying
    again cannot help (the settings are wrong), so the start fails at once.
    """

    reason: str
    hint: str = ""
    final: bool = False

    def __str__(self) -> str:
        return f"{self.reason}; {self.hint}" if self.hint else self.reason


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from (each once: chains can loop)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def socket_failure(exc: BaseException, *, tls: bool, plain: str, secure: str) -> Failure:
    """The :class:`Failure` for what a Python client (redis-py, aiormq) raised while
    connecting. ``tls``: whether the client spoke TLS; ``plain`` / ``secure``: the URL
    schemes without and with TLS (``redis`` / ``rediss``), named in the hints."""
    causes = _causes(exc)
    text = " ".join(str(e) for e in causes)
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in causes) or (
        "CERTIFICATE_VERIFY_FAILED" in text
    ):
        said = [str(getattr(e, "verify_message", "") or "") for e in causes]
        detail = next((one for one in said if one), "certificate verify failed")
        return Failure(
            f"the server's TLS certificate is not trusted ({detail})",
            "give the CA that signed it with ssl_ca (or ssl_verify=false for a test)",
            final=True,
        )
    if tls and ("WRONG_VERSION_NUMBER" in text or "wrong version number" in text):
        return Failure(
            "the TLS handshake failed: the port does not speak TLS",
            f"use {plain}:// for a plaintext port, or the broker's TLS port",
            final=True,
        )
    if any(isinstance(e, ssl.SSLError) for e in causes):
        return Failure(f"the TLS handshake failed ({_first_line(exc)})", final=True)
    if any(isinstance(e, ConnectionRefusedError) for e in causes):
        return Failure("connection refused", "is the broker running, and is this its port?")
    if any(isinstance(e, socket.gaierror) for e in causes):
        return Failure(f"the host name does not resolve ({_first_line(exc)})")
    if any(isinstance(e, asyncio.IncompleteReadError) and e.partial for e in causes):
        return Failure(
            "the server answered in another protocol",
            "is this the broker's port?"
            + ("" if tls else f" (a TLS port needs {secure}://, with ssl_ca)"),
        )
    if not tls and (
        any(isinstance(e, ConnectionResetError | EOFError) for e in causes)
        or "connection reset" in text.lower()
    ):
        return Failure(
            "the server closed the connection at once",
            f"if this is a TLS port, use {secure}:// (with ssl_ca)",
        )
    if any(isinstance(e, TimeoutError) for e in causes):
        return Failure("no answer", "is the host right, and does a firewall let it through?")
    return Failure(_first_line(exc))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


async def connect_within(
    where: str,
    seconds: float,
    attempt: Callable[[float], Awaitable[T]],
    explain: Callable[[BaseException], Failure],
    hide: Callable[[str], str] = str,
) -> T:
    """``await attempt(seconds_left)`` until it succeeds; again after each failure that
    ``explain`` does not call final, with a growing pause, for at most ``seconds`` in
    all. Raises :class:`ConnectError` (one line, passed through ``hide``)
    naming ``where`` and the last failure that says why: an attempt cut short by the
    deadline after an earlier one failed (refused, say) names the earlier failure, not
    "no answer", since a busy machine can take longer than the time left to be refused."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    pause = _FIRST_PAUSE
    earlier: Failure | None = None
    while True:
        left = deadline - loop.time()
        timer = asyncio.timeout(left)
        try:
            async with timer:
                return await attempt(left)
        except Exception as exc:  # TimeoutError included: no answer in time
            if timer.expired() and earlier is not None:
                failure = earlier  # cut short by the deadline: keep what was said
            else:
                failure = earlier = explain(exc)
        if failure.final:
            raise ConnectError(hide(f"{where}: cannot connect: {failure}"))
        if deadline - loop.time() <= pause:
            raise ConnectError(hide(f"{where}: cannot connect within {seconds:g} s: {failure}"))
        await asyncio.sleep(pause)
        pause = min(2 * pause, _LONGEST_PAUSE)
