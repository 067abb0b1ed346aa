"""Kafka listeners and publishers made from a URL and options as `arroyo run` makes them
(connecting to nothing), for the unit tests of the Kafka package."""

from __future__ import annotations

from typing import Any

from arroyo.brokers import open_listener, open_publisher
from arroyo.brokers.kafka import KafkaListener, KafkaPublisher


def make_listener(url: str, **options: Any) -> KafkaListener:
    made = open_listener(url, options)
    assert isinstance(made, KafkaListener)
    return made


def make_publisher(url: str, **options: Any) -> KafkaPublisher:
    made = open_publisher(url, options)
    assert isinstance(made, KafkaPublisher)
    return made
