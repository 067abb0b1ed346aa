"""The ZeroMQ connectors' options: from the URL and the YAML, checked before anything opens."""

from __future__ import annotations

import pytest

from arroyo import ConfigError
from arroyo.brokers import open_listener, open_publisher, parse_url
from arroyo.brokers.zmq import ZmqListener, ZmqPublisher, ZmqSimulatorSettings


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("zmq+pull://127.0.0.1", "needs a port"),
        ("zmq+pull://127.0.0.1:0", "port 0 only when binding"),
        ("zmq+sub://127.0.0.1:5556/frames", "no path"),
        ("zmq+push://127.0.0.1:5556", "a listener needs zmq\\+pull:// or zmq\\+sub://"),
        ("zmq+pull://127.0.0.1:5556?topic=x", "'topic' is for zmq\\+sub:// only"),
        (
            "zmq+pull://127.0.0.1:5556?rcvhwm=lots",
            "zmq option 'rcvhwm': input should be a valid int",
        ),
        ("zmq+pull://127.0.0.1:5556?hwm=10", "unknown zmq option\\(s\\) 'hwm'"),
    ],
)
def test_bad_listener_urls_are_config_errors(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        open_listener(url)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("zmq+pull://127.0.0.1:5556", "a publisher needs zmq\\+push:// or zmq\\+pub://"),
        ("zmq+pub://127.0.0.1:5556?rcvhwm=3", "unknown zmq option\\(s\\) 'rcvhwm'"),
        (
            "zmq+pub://127.0.0.1:5556?sndhwm=-1",
            "'sndhwm': input should be greater than or equal to 0",
        ),
    ],
)
def test_bad_publisher_urls_are_config_errors(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        open_publisher(url)


def test_options_come_from_the_url_and_the_yaml() -> None:
    listener = open_listener("zmq+sub://127.0.0.1:5556?rcvhwm=4", {"topic": ["a", "b"]})
    assert isinstance(listener, ZmqListener)
    assert (listener.rcvhwm, listener.topics, listener.bind) == (4, ["a", "b"], False)
    publisher = open_publisher("zmq+pub://*:5557", {"sndhwm": 2, "linger": 0})
    assert isinstance(publisher, ZmqPublisher)
    assert (publisher.sndhwm, publisher.linger, publisher.name) == (2, 0, "zmq+pub://*:5557")


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"topic": ["ok", 7]}, "zmq option 'topic.1': input should be a valid string, got 7"),
        ({"rcvhwm": -1}, "zmq option 'rcvhwm': input should be greater than or equal to 0"),
        ({"copy_threshold": -1}, "zmq option 'copy_threshold': input should be greater"),
        ({"run_timeout": 0}, "zmq option 'run_timeout': input should be greater than 0"),
        ({"bind": "maybe"}, "zmq option 'bind': input should be a valid boolean"),
    ],
)
def test_bad_yaml_options_name_the_option_and_the_broker(
    options: dict[str, object], problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        open_listener("zmq+sub://127.0.0.1:5556", options)
    assert problem in str(caught.value) and "\n" not in str(caught.value)


def test_defaults() -> None:
    listener = open_listener("zmq+sub://127.0.0.1:5556")
    assert isinstance(listener, ZmqListener)
    assert (listener.rcvhwm, listener.topics, listener.copy_threshold) == (16, [""], 65536)
    assert listener.parser.run_timeout == 60.0  # type: ignore[attr-defined]
    publisher = open_publisher("zmq+push://127.0.0.1:5556")
    assert isinstance(publisher, ZmqPublisher)
    assert (publisher.sndhwm, publisher.linger, publisher.bind) == (16, 5000, False)
    simulator = ZmqSimulatorSettings.from_url(parse_url("zmq+push://127.0.0.1:5556"))
    assert (simulator.sndhwm, simulator.linger) == (16, 30000)


def test_a_single_topic_from_the_url_is_a_list_of_one() -> None:
    listener = open_listener("zmq+sub://127.0.0.1:5556?topic=frames&run_timeout=2.5")
    assert isinstance(listener, ZmqListener)
    assert listener.topics == ["frames"]
    assert listener.parser.run_timeout == 2.5  # type: ignore[attr-defined]
