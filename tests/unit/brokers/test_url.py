"""Broker URL syntax (arroyo/brokers/url.py): one server or a list of them, and the
errors for a malformed address; which schemes take a list (parse_url)."""

from __future__ import annotations

import pytest

from arroyo.brokers import parse_url, split_url
from arroyo.errors import ConfigError


def test_one_server_is_host_and_port_and_the_only_server() -> None:
    url = split_url("redis://User:pw@Example.org:6379/frames?group=g")
    assert (url.host, url.port, url.address) == ("example.org", 6379, "example.org:6379")
    assert url.servers == (("example.org", 6379),)
    assert (url.username, url.password, url.path) == ("User", "pw", "frames")
    assert split_url("memory://name").servers == (("name", None),)
    assert split_url("file:///tmp/x.avro").servers == ()


def test_a_list_of_servers_keeps_their_order_and_the_first_is_host_and_port() -> None:
    url = split_url("kafka://h1:9092,H2:9093,h3/frames?group=g")
    assert url.servers == (("h1", 9092), ("h2", 9093), ("h3", None))
    assert (url.host, url.port) == ("h1", 9092)
    assert (url.path, url.query) == ("frames", {"group": "g"})


def test_ipv6_servers_in_brackets_and_credentials_before_the_list() -> None:
    url = split_url("kafka://user:secret@[::1]:9092,[fe80::2],h:1/t")
    assert url.servers == (("::1", 9092), ("fe80::2", None), ("h", 1))
    assert (url.username, url.password) == ("user", "secret")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("kafka://h1:9092,,h3:9092/t", "empty server in 'kafka://h1:9092,,h3:9092/t'"),
        ("kafka://h1:9092,:9093/t", "empty server in"),
        ("kafka://h1:x,h2/t", "bad port 'x' of server 'h1' in 'kafka://h1:x,h2/t'"),
        ("kafka://h1:70000,h2/t", "bad port '70000' of server 'h1'"),
        ("kafka://h1:1:2,h2/t", "bad port '1:2' of server 'h1'"),
        ("kafka://[::1]x,h2/t", "bad server '[::1]x'"),
        ("kafka://h1:x/t", "bad port in 'kafka://h1:x/t'"),
    ],
)
def test_a_malformed_address_is_one_line_naming_the_url(url: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        split_url(url)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_password_is_not_in_the_error() -> None:
    with pytest.raises(ConfigError) as caught:
        split_url("kafka://u:hunter2-secret@h1:x,h2/t")
    assert "hunter2-secret" not in str(caught.value)


def test_only_kafka_takes_a_list_of_servers() -> None:
    pytest.importorskip("confluent_kafka")
    pytest.importorskip("redis")
    pytest.importorskip("aio_pika")
    assert len(parse_url("kafka://a:1,b:2,c:3/t").servers) == 3
    for url in ("redis://a:1,b:2/s?group=g", "amqp://u:p@a:1,b:2/?queue=q"):
        with pytest.raises(ConfigError, match="takes one HOST:PORT, not a list of 2 servers"):
            parse_url(url)
