"""The contract's ``broker`` fixture: each test of a contract class runs once on every
broker that meets the class's ``concern`` (declared in brokers.py), as an adapter of
adapters.py. A broker that does not meet a concern gets no test at all: nothing is
skipped."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.contract.adapters import Broker, make
from tests.contract.brokers import CONCERNS, meeting

MARKED = {"kafka", "redis", "rabbitmq"}
"""Brokers whose tests carry their marker (``-m kafka`` runs the Kafka ones)."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "broker" not in metafunc.fixturenames:
        return
    concern = getattr(metafunc.cls, "concern", None)
    if concern not in CONCERNS:
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid}: a contract test belongs to a class whose "
            f"`concern` is one of brokers.CONCERNS, not {concern!r}"
        )
    params = [
        pytest.param(name, marks=[getattr(pytest.mark, name)] if name in MARKED else [])
        for name in meeting(concern)
    ]
    metafunc.parametrize("broker", params, indirect=True)


@pytest.fixture
async def broker(
    request: pytest.FixtureRequest, unique_name: Callable[[str], str]
) -> AsyncIterator[Broker]:
    """The broker the test runs on (see ``pytest_generate_tests``)."""
    made = make(request.param, unique_name, request)
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
def wrong_ca(tmp_path: Path) -> str:
    """A CA that did not sign the brokers' certificates (its PEM file)."""
    key, cert = tmp_path / "other.key", tmp_path / "other-ca.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=Some other CA"),
        ],
        check=True,
        capture_output=True,
    )
    return str(cert)
