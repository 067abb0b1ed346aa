"""How a ZeroMQ socket reaches its peer: addresses, bind or connect, the probe."""

from __future__ import annotations

import asyncio

import pytest
import zmq.asyncio

from arroyo.brokers import open_listener, parse_url
from arroyo.brokers.zmq import ZmqListener, address, open_socket, probe
from arroyo.errors import ConnectError


def test_star_binds_and_a_host_connects() -> None:
    assert address(parse_url("zmq+pull://*:5555"), False) == ("tcp://*:5555", True)
    assert address(parse_url("zmq+pull://10.0.0.7:5555"), False) == ("tcp://10.0.0.7:5555", False)
    assert address(parse_url("zmq+pull://127.0.0.1:5555"), True) == ("tcp://127.0.0.1:5555", True)
    assert address(parse_url("zmq+pull://127.0.0.1:0"), True) == ("tcp://127.0.0.1:*", True)


def test_factories_do_not_open_sockets() -> None:
    listener = open_listener("zmq+pull://*:1")  # port 1 could not be bound
    assert isinstance(listener, ZmqListener) and listener.endpoint is None


def test_a_port_in_use_is_a_connect_error_of_one_line() -> None:
    context = zmq.asyncio.Context()
    try:
        first, endpoint = open_socket(
            context, "PULL", parse_url("zmq+pull://127.0.0.1:0"), True, {}
        )
        taken = parse_url(endpoint.replace("tcp://", "zmq+pull://"))
        with pytest.raises(ConnectError) as caught:
            open_socket(context, "PULL", taken, True, {})
        first.close(linger=0)
    finally:
        context.destroy(linger=0)
    message = str(caught.value)
    assert f"{taken}: cannot bind {endpoint}: " in message and "\n" not in message


def test_the_probe_says_there_is_no_handshake_to_try() -> None:
    status, detail = asyncio.run(probe(open_listener("zmq+pull://127.0.0.1:5555"), 1.0))
    assert (status, detail.split(" (")[0]) == ("skipped", "ZeroMQ has no handshake to try")
