"""The Kafka connector as a package: the install hint when confluent-kafka is missing,
its declaration, and the ready-made kafka-workers pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from arroyo.brokers.connector import CONNECTORS
from arroyo.brokers.kafka import CONNECTOR, KafkaListener, KafkaPublisher

ROOT = Path(__file__).resolve().parents[4]


def test_the_connector_declares_what_kafka_does() -> None:
    assert CONNECTORS.for_scheme("kafka") is CONNECTOR
    assert (CONNECTOR.name, CONNECTOR.schemes, CONNECTOR.extra) == ("kafka", ("kafka",), "kafka")
    parts = (CONNECTOR.listener, CONNECTOR.publisher, CONNECTOR.browser, CONNECTOR.probe)
    assert all(parts) and CONNECTOR.exactly_once is not None and CONNECTOR.acknowledges


def test_the_kafka_workers_connector_loads_and_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    from arroyo.build import build_file
    from arroyo.operators import Integrate

    monkeypatch.setenv("ARROYO_KAFKA", "broker.example:19092")
    (built,) = build_file(ROOT / "connectors" / "kafka-workers.yaml")
    block = built.block
    assert isinstance(block.listener, KafkaListener)
    assert block.listener.topics == ["frames"]
    assert block.listener.group == "integrate"
    assert block.listener.servers == "broker.example:19092"
    assert isinstance(block.operator, Integrate)
    (results,) = block.publishers
    assert isinstance(results, KafkaPublisher) and results.topic == "frames.integrated"
    assert isinstance(block.dead_letter, KafkaPublisher)
    assert block.dead_letter.topic == "frames.dlq"
