"""Connecting at start (no broker): the bounded retry, the causes put in words, and the
hints for TLS mix-ups, for the Python clients' errors and for librdkafka's reports."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator

import pytest

from arroyo.brokers import open_listener, open_publisher
from arroyo.brokers.connecting import Failure, connect_within, socket_failure
from arroyo.brokers.kafka_checks import COMMON_SETTINGS, failure
from arroyo.errors import ConfigError, ConnectError

ck = pytest.importorskip("confluent_kafka")
kafka_admin = pytest.importorskip("confluent_kafka.admin")


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
    ("reports", "config", "expected", "final"),
    [
        (
            ["127.0.0.1:9999/bootstrap: Connect to ipv4#127.0.0.1:9999 failed: Connection "
             "refused (after 0ms in state CONNECT)", "1/1 brokers are down"],
            {},
            "connection refused; is the broker running",
            False,
        ),
        (
            ["127.0.0.1:9094/bootstrap: Disconnected: connection closed by peer: receive 0 "
             "after POLLIN (after 1ms in state APIVERSION_QUERY)", "0/1 brokers are down"],
            {},
            "closed the connection before answering; if this is a TLS port, set "
            "security.protocol=SSL",
            False,
        ),
        (
            ["ssl://127.0.0.1:9092/bootstrap: SSL handshake failed: Disconnected: SSL "
             "connection closed by peer: connecting to a PLAINTEXT broker listener? (after "
             "3ms in state SSL_HANDSHAKE)"],
            {"security.protocol": "SSL"},
            "does not speak TLS; remove security.protocol=SSL",
            True,
        ),
        (
            ["ssl://h:9094/bootstrap: SSL handshake failed: error:0A000086:SSL "
             "routines::certificate verify failed: broker certificate could not be verified"],
            {"security.protocol": "SSL"},
            "not trusted (certificate verify failed); give the CA",
            True,
        ),
        (
            ["nohost:9092/bootstrap: Failed to resolve 'nohost:9092': Name or service not "
             "known (after 1ms in state CONNECT)"],
            {},
            "does not resolve (Failed to resolve 'nohost:9092': Name or service not known)",
            False,
        ),
        ([], {}, "no answer", False),
    ],
)  # fmt: skip
def test_librdkafka_reports_in_words(
    reports: list[str], config: dict[str, str], expected: str, final: bool
) -> None:
    said = failure(reports, config)
    assert expected in str(said)
    assert said.final == final


def test_librdkafka_knows_every_setting_offered_as_a_correction() -> None:
    unknown = []
    for key in COMMON_SETTINGS:
        try:
            ck.Producer({key: "1", "logger": _Quiet()}).close()
        except ck.KafkaException as exc:
            if "No such configuration property" in str(exc):
                unknown.append(key)
    assert unknown == []


class _Quiet:
    def log(self, *args: object) -> None:
        pass


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


# -- the topic's size limit (kafka_checks.fit_topic) with a fake admin client ----------


class _Entry:
    def __init__(self, value: str) -> None:
        self.value = value


class _Done:
    def __init__(self, value: object = None, error: int | None = None) -> None:
        self.value, self.error = value, error

    def result(self, timeout: float | None = None) -> object:
        if self.error is not None:
            raise ck.KafkaException(ck.KafkaError(self.error))
        return self.value


class FakeAdmin:
    """The admin calls fit_topic makes, answered from a dict of topic limits."""

    def __init__(
        self,
        topics: dict[str, int],
        broker: dict[str, str],
        create_error: int | None = None,
    ) -> None:
        self.topics, self.broker, self.create_error = topics, broker, create_error
        self.created: list[object] = []

    def __call__(self, config: dict[str, object]) -> FakeAdmin:
        assert "enable.idempotence" not in config
        return self

    def describe_configs(self, resources: list[object], request_timeout: float) -> object:
        [resource] = resources
        kind, name = resource.restype, resource.name  # type: ignore[attr-defined]
        if kind == kafka_admin.ResourceType.BROKER:
            return {resource: _Done({k: _Entry(v) for k, v in self.broker.items()})}
        if name not in self.topics:
            return {resource: _Done(error=ck.KafkaError.UNKNOWN_TOPIC_OR_PART)}
        return {resource: _Done({"max.message.bytes": _Entry(str(self.topics[name]))})}

    def list_topics(self, timeout: float) -> object:
        return type("Metadata", (), {"brokers": {1: None}})()

    def create_topics(self, new: list[object], request_timeout: float) -> object:
        [topic] = new
        self.created.append(topic)
        return {topic.topic: _Done(error=self.create_error)}  # type: ignore[attr-defined]


LIMIT = 64 << 20
STOCK = {"message.max.bytes": "1048588", "auto.create.topics.enable": "true"}


def fit(admin: FakeAdmin, monkeypatch: pytest.MonkeyPatch, topic: str = "frames") -> None:
    from arroyo.brokers.kafka_checks import fit_topic

    monkeypatch.setattr(kafka_admin, "AdminClient", admin)
    config = {"bootstrap.servers": "h:9092", "enable.idempotence": "true"}
    fit_topic("kafka://h:9092/frames", config, topic, LIMIT, 5, str)


@pytest.mark.parametrize(
    ("admin", "expected", "created"),
    [
        (FakeAdmin({"frames": 1048588}, STOCK), "takes messages up to 1048588 bytes", False),
        (FakeAdmin({"frames": LIMIT}, STOCK), None, False),
        (FakeAdmin({}, {**STOCK, "message.max.bytes": str(LIMIT)}), None, False),
        (
            FakeAdmin({}, {**STOCK, "auto.create.topics.enable": "false"}),
            "does not exist and the broker does not create topics",
            False,
        ),
        (FakeAdmin({}, STOCK), None, True),
        (
            FakeAdmin({}, STOCK, create_error=ck.KafkaError.TOPIC_AUTHORIZATION_FAILED),
            "or raise the broker's message.max.bytes",
            True,
        ),
    ],
    ids=["smaller", "fits", "default-fits", "no-auto-create", "created", "create-refused"],
)
def test_the_topic_limit_is_checked_and_a_new_topic_made_to_fit(
    admin: FakeAdmin,
    expected: str | None,
    created: bool,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fit(admin, monkeypatch)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    if expected is None:
        assert warnings == []
    else:
        [warning] = warnings
        assert warning.startswith("kafka://h:9092/frames: ") and expected in warning
    assert bool(admin.created) == created
    for new in admin.created:
        assert new.config == {"max.message.bytes": str(LIMIT)}  # type: ignore[attr-defined]
        assert (new.num_partitions, new.replication_factor) == (-1, -1)  # type: ignore[attr-defined]
