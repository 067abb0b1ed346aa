"""How the Kafka connector reaches the cluster (connection.py), without a broker: what
librdkafka reported put in words, its log lines without secrets, the one redaction."""

from __future__ import annotations

import json
import logging

import confluent_kafka as ck
import pytest

from arroyo.brokers.kafka.connection import ClientLog, Reachability, failure, hider


def test_client_log_lines_are_scrubbed_and_kept_at_debug_level(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client_log = ClientLog("kafka://h/t", hider({"sasl.password": "hunter2-secret"}))
    with caplog.at_level(logging.DEBUG, logger="arroyo.brokers.kafka.client"):
        client_log.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#1", "pw hunter2-secret")
    assert caplog.records[0].levelno == logging.DEBUG
    assert "hunter2" not in caplog.text
    assert "pw ***" in caplog.text


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


def test_secrets_of_the_settings_and_the_url_password_are_hidden() -> None:
    hide = hider(
        {"sasl.password": "hunter2-secret", "ssl.key.pem": "-----KEY-----", "sasl.username": "u"},
        "url-pass",
    )
    text = "hunter2-secret -----KEY----- url-pass u kafka://me:other@h/t?sasl.password=x"
    assert hide(text) == "*** *** *** u kafka://me:***@h/t?sasl.password=***"


# -- reachability: librdkafka's statistics and errors (shapes as librdkafka 2.x reports
# them while a broker is up, then killed)

UP = {"h:9092/1": {"nodeid": 1, "state": "UP"}, "GroupCoordinator": {"nodeid": -1, "state": "UP"}}
DOWN = {  # the learned broker is gone; the bootstrap entry and the coordinator are left
    "h:9092/bootstrap": {"nodeid": -1, "state": "INIT"},
    "GroupCoordinator": {"nodeid": -1, "state": "TRY_CONNECT"},
}


def stats(brokers: dict[str, dict[str, object]]) -> str:
    return json.dumps({"name": "rdkafka#consumer-1", "brokers": brokers})


def test_up_until_statistics_show_no_broker_up_then_up_again() -> None:
    reach = Reachability()
    assert reach.up  # nothing known yet
    reach.on_stats(stats(UP))
    assert reach.up
    reach.on_stats(stats(DOWN))
    assert not reach.up
    reach.on_stats(stats({}))  # nothing said: unchanged
    assert not reach.up
    reach.on_stats("not json")
    assert not reach.up
    reach.on_stats(stats(UP))
    assert reach.up


def test_all_brokers_down_is_down_at_once_other_errors_are_not() -> None:
    reach = Reachability()
    reach.on_error(ck.KafkaError(ck.KafkaError._TRANSPORT))
    assert reach.up
    reach.on_error(ck.KafkaError(ck.KafkaError._ALL_BROKERS_DOWN))
    assert not reach.up
