"""The RabbitMQ listener's logic that needs no broker: delivery counts, and when a batch
of acknowledgements may be one ``basic.ack`` with ``multiple``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiormq.exceptions import ChannelInvalidStateError

from arroyo.brokers import open_listener
from arroyo.brokers.rabbitmq import RabbitMQListener, deliveries


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


class Delivery:
    """A delivery as the listener sees it: its channel (None: closed, as aio-pika raises
    then) and its tag."""

    def __init__(self, channel: object | None, tag: int) -> None:
        self._channel, self.delivery_tag = channel, tag

    @property
    def channel(self) -> object:
        if self._channel is None:
            raise ChannelInvalidStateError
        return self._channel


def test_a_batch_is_acknowledged_up_to_its_last_only_when_it_leaves_nothing_out() -> None:
    listener = open_listener("amqp://guest:guest@127.0.0.1:5672/?queue=q")
    assert isinstance(listener, RabbitMQListener)
    live, other = object(), object()
    first, second, third = Delivery(live, 1), Delivery(live, 2), Delivery(live, 3)
    stale = Delivery(None, 1)  # of a channel closed since (a reconnection)
    for delivery in (first, second, third, stale, Delivery(other, 1)):
        listener._unacked[id(delivery)] = delivery  # type: ignore[assignment]
    up_to_last = listener._all_up_to_last
    assert up_to_last([first, second])  # type: ignore[list-item]
    assert not up_to_last([second, third])  # type: ignore[list-item]  # the first waits
    assert not up_to_last([first, Delivery(other, 2)])  # type: ignore[list-item]
    assert not up_to_last([stale, first])  # type: ignore[list-item]
    assert not up_to_last([first, stale])  # type: ignore[list-item]
