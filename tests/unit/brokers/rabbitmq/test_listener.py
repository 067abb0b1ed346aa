"""The RabbitMQ listener's logic that needs no broker: delivery counts."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from arroyo.brokers.rabbitmq import deliveries


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
