"""RabbitMQ connector logic that needs no broker: URLs, options, secrets, delivery counts."""

from __future__ import annotations

import ssl
from types import SimpleNamespace
from typing import Any

import pytest

from arroyo import ConfigError
from arroyo.brokers import open_listener, open_publisher
from arroyo.brokers.rabbitmq import AmqpSettings, RabbitMQListener, RabbitMQPublisher, deliveries


def test_url_parts_and_options() -> None:
    listener = open_listener(
        "amqp://alice:pw@broker:5673/beamline?queue=frames&prefetch=10", {"queue_type": "quorum"}
    )
    assert isinstance(listener, RabbitMQListener)
    settings = listener.settings
    assert (settings.host, settings.port, settings.vhost) == ("broker", 5673, "beamline")
    assert (settings.username, settings.password, settings.tls) == ("alice", "pw", None)
    assert (listener.queue, listener.prefetch, listener.queue_type) == ("frames", 10, "quorum")
    assert listener.name == "amqp://broker:5673/beamline?queue=frames"


@pytest.mark.parametrize(
    ("url", "vhost", "port"),
    [
        ("amqp://h/?queue=q", "/", 5672),
        ("amqp://h/%2F?queue=q", "/", 5672),
        ("amqps://h/prod?queue=q", "prod", 5671),
    ],
)
def test_vhost_and_default_ports(url: str, vhost: str, port: int) -> None:
    listener = open_listener(url)
    assert isinstance(listener, RabbitMQListener)
    assert (listener.settings.vhost, listener.settings.port) == (vhost, port)


def test_publisher_targets() -> None:
    to_queue = open_publisher("amqp://h/?queue=results")
    assert isinstance(to_queue, RabbitMQPublisher)
    assert (to_queue.exchange, to_queue.routing_key) == ("", "results")
    to_exchange = open_publisher("amqp://h/?exchange=frames&routing_key=raw")
    assert isinstance(to_exchange, RabbitMQPublisher)
    assert (to_exchange.exchange, to_exchange.routing_key, to_exchange.queue) == (
        "frames",
        "raw",
        "",
    )
    assert to_exchange.name == "amqp://h:5672/?exchange=frames"


@pytest.mark.parametrize(
    ("kind", "url", "options", "problem"),
    [
        ("listener", "amqp://h/", {}, "needs a queue"),
        ("listener", "amqp://h/?queue=q&prefetch=0", {}, "'prefetch' must be at least 1"),
        ("listener", "amqp://h/?queue=q", {"queue_type": "stream"}, "'queue_type' must be one"),
        ("listener", "amqp://h/?queue=q", {"ssl_ca": "/ca.pem"}, r"need TLS \(the amqps:// scheme"),
        ("listener", "amqp://h/?queue=q&qeue=x", {}, "unknown option.*'qeue'"),
        ("publisher", "amqp://h/", {}, "needs a queue .* or an exchange"),
        ("publisher", "amqp://h/?queue=q", {"prefetch": 5}, "unknown option.*'prefetch'"),
        ("publisher", "amqp://h/?queue=q", {"reconnect_interval": 0}, "must be positive"),
    ],
)
def test_bad_options_are_refused(
    kind: str, url: str, options: dict[str, Any], problem: str
) -> None:
    open_endpoint = open_listener if kind == "listener" else open_publisher
    with pytest.raises(ConfigError, match=problem):
        open_endpoint(url, options)


def test_passwords_come_from_the_url_or_the_yaml_and_stay_hidden() -> None:
    publisher = open_publisher("amqp://bob:from-url@h/?queue=q", {"password": "from-yaml"})
    assert isinstance(publisher, RabbitMQPublisher)
    assert publisher.settings.password == "from-yaml"
    assert "from-url" not in publisher.name and "from-yaml" not in repr(publisher.settings)
    settings = AmqpSettings("h", 5672, password="pa55")
    text = settings.hide(RuntimeError("login pa55 refused for amqp://bob:pa55@h/"))
    assert "pa55" not in text
    with pytest.raises(ConfigError) as refused:
        open_listener("amqp://bob:pa55@h/?queue=q&bogus=1")
    assert "pa55" not in str(refused.value)


def test_tls_context() -> None:
    listener = open_listener("amqps://h/?queue=q&ssl_verify=false")
    assert isinstance(listener, RabbitMQListener)
    assert listener.settings.tls is not None
    context = listener.settings.tls.context()
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
    strict = open_listener("amqps://h/?queue=q")
    assert isinstance(strict, RabbitMQListener)
    assert strict.settings.tls is not None
    assert strict.settings.tls.context().verify_mode == ssl.CERT_REQUIRED


def message(headers: dict[str, Any] | None, redelivered: bool) -> Any:
    return SimpleNamespace(headers=headers, redelivered=redelivered)


def test_delivery_counts() -> None:
    assert deliveries(message({}, False), quorum=False) == 1
    assert deliveries(message(None, True), quorum=False) == 2  # classic: only "redelivered"
    assert deliveries(message({"x-delivery-count": 0}, False), quorum=True) == 1
    assert deliveries(message({"x-delivery-count": 4}, True), quorum=True) == 5
    # Elsewhere the header came with the message (moved from a quorum queue): ignored.
    assert deliveries(message({"x-delivery-count": 7}, False), quorum=False) == 1
    assert deliveries(message({"x-delivery-count": 7}, True), quorum=False) == 2
