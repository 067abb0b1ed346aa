"""The contract's declarations hold together: the table in brokers.py is the declarations,
every concern has its tests, and what the contract declares of a broker is what the
broker's connector declares of itself."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from arroyo.brokers.connector import CONNECTORS
from tests.contract import brokers
from tests.contract.brokers import BROKERS, CONCERNS, REASONS, table

SCHEME = {
    "memory": "memory",
    "kafka": "kafka",
    "redis": "redis",
    "rabbitmq": "amqp",
    "zmq": "zmq+pull",
}


def test_the_table_in_the_docstring_is_the_declarations() -> None:
    assert brokers.__doc__ is not None
    assert table() in brokers.__doc__, f"brokers.py's table should read:\n{table()}"


def test_every_concern_has_a_test_class_and_every_class_a_concern() -> None:
    covered: dict[str, list[str]] = {}
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        module = importlib.import_module(f"tests.contract.{path.stem}")
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if name.startswith("Test") and cls.__module__ == module.__name__:
                concern = getattr(cls, "concern", None)
                assert concern in CONCERNS, f"{path.name}::{name}: concern {concern!r}"
                covered.setdefault(concern, []).append(f"{path.name}::{name}")
    assert sorted(covered) == sorted(CONCERNS)


def test_a_concern_left_out_says_why() -> None:
    for broker in BROKERS:
        for concern, why in broker.not_met.items():
            assert concern in CONCERNS, (broker.name, concern)
            assert why in REASONS, f"{broker.name} does not meet {concern!r}: say why"


@pytest.mark.parametrize("declared", BROKERS, ids=lambda b: b.name)
def test_the_connector_declares_what_the_contract_declares(declared: brokers.Declared) -> None:
    connector = CONNECTORS.for_scheme(SCHEME[declared.name])
    assert connector.name == declared.name
    assert connector.acknowledges == declared.acknowledges
    assert connector.extra == declared.extra
