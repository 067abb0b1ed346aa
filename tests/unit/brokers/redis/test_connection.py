"""How the Redis connector reaches the server (connection.py), without a server: the
URL's credentials and the settings', passwords kept out of sight, TLS."""

from __future__ import annotations

import pytest

from arroyo import ConfigError
from arroyo.brokers import open_listener, open_publisher, parse_url
from arroyo.brokers.redis import (
    RedisServer,
    RedisSettings,
    RedisStreamListener,
    RedisStreamPublisher,
)


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
