"""The typed settings every connector's options are declared with."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import Field

from arroyo.brokers import parse_url
from arroyo.brokers.settings import ConnectSettings, TlsSettings
from arroyo.errors import ConfigError


class Example(ConnectSettings, TlsSettings):
    broker = "example"
    group: str | None = None
    batch: int = Field(default=100, ge=1)
    mode: Literal["fast", "safe"] = "safe"
    password: str | None = None

    @classmethod
    def passes_through(cls, key: str) -> bool:
        return "." in key


def test_query_strings_become_the_fields_types_and_options_win_over_the_query() -> None:
    url = parse_url("kafka://h:9092/t?batch=7&connect_timeout=2.5&ssl_verify=false&group=q")
    model, passing = Example.parse(url, {"group": "yaml", "linger.ms": 5})
    assert (model.batch, model.connect_timeout, model.ssl_verify) == (7, 2.5, False)
    assert model.group == "yaml"
    assert passing == {"linger.ms": 5}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("bach=3", "unknown example option(s) 'bach' (did you mean 'batch'?); known: batch,"),
        ("batch=0", "example option 'batch': input should be greater than or equal to 1"),
        ("batch=lots", "example option 'batch': input should be a valid integer"),
        ("connect_timeout=-1", "option 'connect_timeout': input should be greater than 0"),
        ("mode=quick", "example option 'mode': input should be 'fast' or 'safe', got 'quick'"),
    ],
)
def test_a_bad_option_is_one_line_naming_it_and_the_broker(query: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Example.parse(parse_url(f"kafka://u:s3cret@h:9092/t?{query}"))
    message = str(caught.value)
    assert expected in message and "\n" not in message
    assert "s3cret" not in message


def test_from_url_refuses_what_would_pass_through() -> None:
    with pytest.raises(ConfigError, match=r"unknown example option\(s\) 'linger.ms'"):
        Example.from_url(parse_url("kafka://h:9092/t"), {"linger.ms": 5})


def test_tls_options_need_the_tls_scheme() -> None:
    plain = Example.from_url(parse_url("redis://h:6379/s"), {"ssl_ca": "/ca.pem"})
    with pytest.raises(ConfigError, match="need TLS"):
        plain.tls(parse_url("redis://h:6379/s"), "rediss")
    secure = Example.from_url(parse_url("rediss://h:6380/s"), {"ssl_ca": "/ca.pem"})
    tls = secure.tls(parse_url("rediss://h:6380/s"), "rediss")
    assert tls is not None and tls.ca == "/ca.pem" and tls.verify


def test_a_password_of_the_wrong_type_is_not_shown() -> None:
    with pytest.raises(ConfigError) as caught:
        Example.parse(parse_url("redis://h:6379/s"), {"password": ["hunter2"]})
    assert "example option 'password'" in str(caught.value)
    assert "hunter2" not in str(caught.value)
