"""Connecting at start (no broker): the bounded retry, the causes put in words, and the
hints for TLS mix-ups, for the Python clients' errors (librdkafka's reports:
tests/unit/brokers/kafka/test_connection.py)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator

import pytest

from arroyo.brokers import open_listener, open_publisher
from arroyo.brokers.connecting import Failure, connect_within, socket_failure
from arroyo.errors import ConfigError, ConnectError


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) but never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def test_a_refused_connection_is_tried_again_until_the_timeout() -> None:
    attempts = 0

    async def attempt(seconds: float) -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionRefusedError(111, "Connect call failed")

    def explain(exc: BaseException) -> Failure:
        return socket_failure(exc, tls=False, plain="redis", secure="rediss")

    with pytest.raises(ConnectError) as caught:
        asyncio.run(connect_within("redis://h:1/s", 0.5, attempt, explain))
    assert attempts > 1
    assert str(caught.value) == (
        "redis://h:1/s: cannot connect within 0.5 s: connection refused; is the broker "
        "running, and is this its port?"
    )


def test_a_failure_retrying_cannot_mend_ends_at_once() -> None:
    attempts = 0

    async def attempt(seconds: float) -> None:
        nonlocal attempts
        attempts += 1
        raise ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")

    def explain(exc: BaseException) -> Failure:
        return socket_failure(exc, tls=True, plain="amqp", secure="amqps")

    with pytest.raises(ConnectError, match="does not speak TLS; use amqp:// for a plain"):
        asyncio.run(connect_within("amqps://h:5672/", 30, attempt, explain))
    assert attempts == 1


def test_an_attempt_that_hangs_is_cut_at_the_timeout_and_says_no_answer(
    silent_port: int,
) -> None:
    async def attempt(seconds: float) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", silent_port)
        try:
            await reader.read(1)  # the server never says anything
        finally:
            writer.close()

    def explain(exc: BaseException) -> Failure:
        return socket_failure(exc, tls=False, plain="redis", secure="rediss")

    with pytest.raises(ConnectError, match=r"within 0\.3 s: no answer; is the host right"):
        asyncio.run(connect_within("redis://h/s", 0.3, attempt, explain))


def test_an_attempt_cut_by_the_deadline_keeps_the_reason_an_earlier_one_gave() -> None:
    # On a busy machine the last attempt can take longer than the time left to be
    # refused; the line must still say "connection refused", not "no answer".
    attempts = 0

    async def attempt(seconds: float) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionRefusedError(111, "Connection refused")
        await asyncio.Event().wait()  # the next attempt outlasts the deadline

    def explain(exc: BaseException) -> Failure:
        return socket_failure(exc, tls=False, plain="redis", secure="rediss")

    with pytest.raises(ConnectError) as caught:
        asyncio.run(connect_within("redis://h:1/s", 0.3, attempt, explain))
    assert attempts == 2
    assert str(caught.value) == (
        "redis://h:1/s: cannot connect within 0.3 s: connection refused; is the broker "
        "running, and is this its port?"
    )


@pytest.mark.parametrize(
    ("error", "tls", "reason", "hint", "final"),
    [
        (ConnectionResetError(104, "reset"), False, "closed the connection", "use rediss://", 0),
        (asyncio.IncompleteReadError(b"HTTP/1.1", 9), False, "another protocol", "rediss://", 0),
        (socket.gaierror(-2, "Name or service not known"), False, "does not resolve", "", 0),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), True, "not trusted", "", 1),
        (TimeoutError(), False, "no answer", "firewall", 0),
    ],
)
def test_socket_errors_in_words(
    error: BaseException, tls: bool, reason: str, hint: str, final: int
) -> None:
    wrapped = ConnectionError("the client's own wrapper")
    wrapped.__cause__ = error
    said = socket_failure(wrapped, tls=tls, plain="redis", secure="rediss")
    assert reason in said.reason
    assert hint in said.hint
    assert said.final == bool(final)


@pytest.mark.parametrize(
    "url",
    [
        "kafka://h:9092/t?group=g&connect_timeout=-1",
        "redis://h/s?connect_timeout=0",
        "amqp://h/?queue=q&connect_timeout=none",
    ],
)
def test_connect_timeout_is_one_option_checked_on_every_broker(url: str) -> None:
    with pytest.raises(ConfigError, match="connect_timeout"):
        open_listener(url)
    with pytest.raises(ConfigError, match="connect_timeout"):
        open_publisher(url.replace("group=g&", ""))


@pytest.mark.parametrize(
    ("listener", "publisher"),
    [
        ("kafka://h:9092/t?group=g&connect_timeout=2.5", "kafka://h:9092/t?connect_timeout=2.5"),
        ("redis://h/s?connect_timeout=2.5", "redis://h/s?connect_timeout=2.5"),
        ("redis+pubsub://h/c?connect_timeout=2.5", "redis+pubsub://h/c?connect_timeout=2.5"),
        ("amqp://h/?queue=q&connect_timeout=2.5", "amqp://h/?queue=q&connect_timeout=2.5"),
    ],
)
def test_connect_timeout_reaches_every_connector(listener: str, publisher: str) -> None:
    for endpoint in (open_listener(listener), open_publisher(publisher)):
        settings = getattr(endpoint, "settings", endpoint)  # Redis, RabbitMQ: their settings
        assert settings.connect_timeout == 2.5, endpoint.name
