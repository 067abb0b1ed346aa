"""``create:`` in a config: accepted on Kafka endpoints only, checked before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from arroyo.brokers.kafka.admin import admin_config
from arroyo.cli import app

runner = CliRunner()


@pytest.mark.parametrize("command", ["run", "check"])
def test_create_on_an_endpoint_that_is_not_kafka_is_refused(tmp_path: Path, command: str) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        "blocks:\n  - name: w\n    listener: memory://in\n"
        "    publishers:\n      - {url: 'memory://out', create: {partitions: 2}}\n"
    )
    result = runner.invoke(app, [command, str(config)])
    assert result.exit_code == 2
    assert result.output == (
        f"error: {config}: blocks[0] (w).publishers[0].create: Arroyo creates Kafka topics "
        "only; memory://out is not Kafka\n"
    )


def test_create_settings_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        "blocks:\n  - name: w\n    listener:\n      url: kafka://127.0.0.1:9/t?group=g\n"
        "      create: {partitions: 0, replicas: 1}\n"
    )
    result = runner.invoke(app, ["check", str(config)])
    assert result.exit_code == 2
    assert "blocks[0] (w).listener.create.partitions: Input should be greater than" in result.output
    assert "create.replicas: unknown key 'replicas' (did you mean 'replication'?)" in result.output


def test_create_on_a_topic_pattern_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        "blocks:\n  - name: w\n    listener:\n      url: kafka://127.0.0.1:9/^frames-.*?group=g\n"
        "      create: {partitions: 2}\n"
    )
    result = runner.invoke(app, ["check", str(config)])
    assert result.exit_code == 2
    assert "blocks[0] (w).listener.create: a topic pattern names no topic to create" in (
        result.output
    )


def test_the_admin_client_gets_the_connection_settings_only() -> None:
    consumer = {
        "bootstrap.servers": "a:9093,b:9093",
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": "/etc/ca.pem",
        "sasl.mechanism": "PLAIN",
        "sasl.password": "secret",
        "group.id": "workers",
        "enable.auto.commit": "false",
        "fetch.max.bytes": "1000",
    }
    assert admin_config(consumer) == {
        "bootstrap.servers": "a:9093,b:9093",
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": "/etc/ca.pem",
        "sasl.mechanism": "PLAIN",
        "sasl.password": "secret",
    }
