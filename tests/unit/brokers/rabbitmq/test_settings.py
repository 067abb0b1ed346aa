"""RabbitMQ URLs and options (arroyo.brokers.rabbitmq.settings), checked without a broker."""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from arroyo import ConfigError
from arroyo.brokers import open_listener, open_publisher
from arroyo.brokers.rabbitmq import RabbitMQListener, RabbitMQPublisher


def test_url_parts_and_options() -> None:
    listener = open_listener(
        "amqp://alice:pw@broker:5673/beamline?queue=frames&prefetch=10", {"queue_type": "quorum"}
    )
    assert isinstance(listener, RabbitMQListener)
    broker = listener.broker
    assert (broker.host, broker.port, broker.vhost) == ("broker", 5673, "beamline")
    assert (broker.username, broker.password, broker.tls) == ("alice", "pw", None)
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
    assert (listener.broker.vhost, listener.broker.port) == (vhost, port)


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
        (
            "listener",
            "amqp://h/?queue=q&prefetch=0",
            {},
            "rabbitmq option 'prefetch': input should be greater than or equal to 1, got '0'",
        ),
        (
            "listener",
            "amqp://h/?queue=q",
            {"queue_type": "stream"},
            "rabbitmq option 'queue_type': input should be 'classic' or 'quorum', got 'stream'",
        ),
        ("listener", "amqp://h/?queue=q", {"ssl_ca": "/ca.pem"}, r"need TLS \(the amqps:// scheme"),
        ("listener", "amqp://h/?queue=q&qeue=x", {}, r"unknown rabbitmq option\(s\) 'qeue'"),
        ("publisher", "amqp://h/", {}, "needs a queue .* or an exchange"),
        (
            "publisher",
            "amqp://h/?queue=q",
            {"prefetch": 5},
            r"unknown rabbitmq option\(s\) 'prefetch'",
        ),
        (
            "publisher",
            "amqp://h/?queue=q",
            {"reconnect_interval": 0},
            "rabbitmq option 'reconnect_interval': input should be greater than 0, got 0",
        ),
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
    assert publisher.broker.password == "from-yaml"
    assert "from-url" not in publisher.name and "from-yaml" not in repr(publisher.settings)
    assert "from-yaml" not in repr(publisher.broker)
    hiding = open_publisher("amqp://h/?queue=q", {"password": "pa55"})
    assert isinstance(hiding, RabbitMQPublisher)
    text = hiding.broker.hide(RuntimeError("login pa55 refused for amqp://bob:pa55@h/"))
    assert "pa55" not in text
    with pytest.raises(ConfigError) as refused:
        open_listener("amqp://bob:pa55@h/?queue=q&bogus=1")
    assert "pa55" not in str(refused.value)


def test_tls_context() -> None:
    listener = open_listener("amqps://h/?queue=q&ssl_verify=false")
    assert isinstance(listener, RabbitMQListener)
    assert listener.broker.tls is not None
    context = listener.broker.tls.context()
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
    strict = open_listener("amqps://h/?queue=q")
    assert isinstance(strict, RabbitMQListener)
    assert strict.broker.tls is not None
    assert strict.broker.tls.context().verify_mode == ssl.CERT_REQUIRED


def test_a_yaml_password_of_digits_is_the_same_text_and_stays_hidden() -> None:
    listener = open_listener("amqp://bob@h/?queue=q", {"password": 314159, "username": 42})
    assert isinstance(listener, RabbitMQListener)
    assert (listener.broker.username, listener.broker.password) == ("42", "314159")
    assert "314159" not in repr(listener.settings) and "314159" not in repr(listener.broker)


def test_only_a_quorum_queue_counts_deliveries() -> None:
    quorum = open_listener("amqp://h/?queue=q&queue_type=quorum")
    classic = open_listener("amqp://h/?queue=q")
    assert isinstance(quorum, RabbitMQListener) and isinstance(classic, RabbitMQListener)
    assert quorum.settings.counts_deliveries and not classic.settings.counts_deliveries
