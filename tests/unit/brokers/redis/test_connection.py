"""How the Redis connector reaches the server (connection.py), without a server: the
URL's credentials and the settings', passwords kept out of sight, TLS."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import Connection, SSLConnection
from redis.exceptions import DataError

from arroyo import ConfigError
from arroyo.brokers import open_listener, open_publisher, parse_url
from arroyo.brokers.redis import (
    RedisServer,
    RedisSettings,
    RedisStreamListener,
    RedisStreamPublisher,
)
from arroyo.brokers.redis.connection import _HiredisPacking


def test_passwords_come_from_the_url_or_the_yaml_and_stay_hidden() -> None:
    listener = open_listener("redis://alice:from-url@h:1/frames")
    assert isinstance(listener, RedisStreamListener)
    assert (listener.server.username, listener.server.password) == ("alice", "from-url")
    assert "from-url" not in listener.name
    assert "from-url" not in repr(listener.server) + repr(listener.settings)
    publisher = open_publisher("redis://:from-url@h:1/results", {"password": "from-yaml"})
    assert isinstance(publisher, RedisStreamPublisher)
    assert publisher.server.password == "from-yaml"
    assert "from-yaml" not in repr(publisher.settings)
    url = parse_url("redis://:pa55@h:1/x")
    server = RedisServer.from_url(url, RedisSettings.from_url(url))
    assert server.hide("AUTH pa55 failed for redis://u:pa55@h:1/x") == (
        "AUTH *** failed for redis://u:***@h:1/x"
    )
    with pytest.raises(ConfigError) as refused:
        open_listener("redis://:pa55@h:1/frames?bogus=1")
    assert "pa55" not in str(refused.value)


def test_tls_settings_reach_the_client() -> None:
    listener = open_listener(
        "rediss://h:1/frames",
        {"ssl_ca": "/ca.pem", "ssl_cert": "/c.pem", "ssl_key": "/c.key", "ssl_verify": False},
    )
    assert isinstance(listener, RedisStreamListener)
    kwargs = listener.server.client().connection_pool.connection_kwargs
    assert (kwargs["ssl_ca_certs"], kwargs["ssl_certfile"], kwargs["ssl_keyfile"]) == (
        "/ca.pem",
        "/c.pem",
        "/c.key",
    )
    assert (kwargs["ssl_cert_reqs"], kwargs["ssl_check_hostname"]) == ("none", False)


PACKED = [
    ("XADD", "s", "*", "kind", "event", "seq", 7, "id", "ab", "data", b"\x00\xff" * 600),
    ("CONFIG GET", "maxmemory"),  # words of the command name become arguments
    (b"CLIENT SETNAME", "arroyo"),
    ("SET", "k", 0.1),  # a float: redis-py's own formatting
    ("SET", "k", "é"),
    ("XADD", "s", "*", "data", b"x" * 100_000),  # larger than the buffer cutoff
    ("XADD", "s", "*", "data", memoryview(b"frame")),
]


@pytest.mark.parametrize("args", PACKED, ids=lambda args: " ".join(map(str, args[:3])))
def test_commands_are_packed_as_redis_py_packs_them(args: tuple[Any, ...]) -> None:
    pool = RedisServer("h", 1, 0, None, None, None, 1.0, 1.0).client().connection_pool
    made = pool.make_connection()
    assert isinstance(made, _HiredisPacking)
    ours = made.pack_command(*args)
    theirs = Connection().pack_command(*args)  # redis-py's packer: the oracle
    assert b"".join(map(bytes, ours)) == b"".join(map(bytes, theirs))


def test_a_large_argument_is_sent_as_it_is_not_copied_into_the_command() -> None:
    frame = b"x" * 100_000
    pool = RedisServer("h", 1, 0, None, None, None, 1.0, 1.0).client().connection_pool
    packed = pool.make_connection().pack_command("XADD", "s", "*", "data", frame)
    assert any(chunk is frame for chunk in packed)


def test_arguments_redis_py_refuses_are_refused_as_it_refuses_them() -> None:
    pool = RedisServer("h", 1, 0, None, None, None, 1.0, 1.0).client().connection_pool
    with pytest.raises(DataError):
        pool.make_connection().pack_command("SET", "k", None)
    with pytest.raises(DataError):
        pool.make_connection().pack_command("SET", "k", True)


def test_tls_connections_pack_with_hiredis_too() -> None:
    url = parse_url("rediss://h:1/frames")
    server = RedisServer.from_url(url, RedisSettings.from_url(url))
    made = server.client().connection_pool.make_connection()
    assert isinstance(made, SSLConnection)
    assert isinstance(made, _HiredisPacking)
    assert made.pack_command("PING") == [b"*1\r\n$4\r\nPING\r\n"]
