"""The interface every broker adapter implements (:class:`Broker`), and what adapters share."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from arroyo import Event, decode
from arroyo.message import Message
from tests.contract.brokers import Declared

Letter = tuple[bytes, dict[str, str]]
"""A dead letter as the test reads it: the original bytes and the ``arroyo.*`` headers."""


@dataclass(frozen=True)
class Refusal:
    """Endpoints carrying a password that cannot get through: a listener URL, a publisher
    URL and their YAML options, and what the error says about why (the broker's refusal,
    or a port nothing listens on)."""

    listener: str
    publisher: str
    options: dict[str, Any]
    says: str


def tls_address(variable: str) -> str:
    """The value of ``variable`` (a TLS port of the test brokers, from ``compose/brokers.sh
    up``); fails naming it when it is not set (the brokers meet TLS: see brokers.py)."""
    value = os.environ.get(variable, "")
    if not value or not os.path.exists(os.environ.get("ARROYO_TLS_CA", "")):
        pytest.fail(
            f"${variable} or $ARROYO_TLS_CA is not set: start the brokers with "
            '`eval "$(compose/brokers.sh up)"`',
            pytrace=False,
        )
    return value


def client_certificate() -> dict[str, str]:
    """The test brokers' client certificate and key as TLS options (when they are set)."""
    options = {
        "ssl_cert": os.environ.get("ARROYO_TLS_CLIENT_CERT", ""),
        "ssl_key": os.environ.get("ARROYO_TLS_CLIENT_KEY", ""),
    }
    return {key: value for key, value in options.items() if value}


class Broker(ABC):
    """One broker, reached the same way by every contract test."""

    typo: tuple[str, str] = ("conect_timeout", "connect_timeout")
    """A misspelt listener option and the option it means."""

    letters_are_events = False
    """True when the broker's dead letters are Events (headers in the metadata, the
    original bytes as payload): brokers without message headers."""

    def __init__(self, declared: Declared, unique_name: Callable[[str], str]) -> None:
        self.declared = declared
        self.unique_name = unique_name
        self.made: list[str] = []
        self._read: dict[str, list[tuple[bytes, dict[str, str]]]] = {}

    @property
    def name(self) -> str:
        """The broker's name (``kafka``)."""
        return self.declared.name

    # -- names -------------------------------------------------------------------------

    async def source(self, tag: str = "source", partitions: int = 1) -> str:
        """A new source that exists now (spread over ``partitions`` where the broker has
        partitions)."""
        name = self.unique_name(tag)
        self.made.append(name)
        await self._make(name, partitions)
        return name

    async def destination(self, tag: str = "sink") -> str:
        """A new destination that exists now; the test reads it from its start."""
        name = self.unique_name(tag)
        self.made.append(name)
        await self._make(name, 1)
        return name

    async def _make(self, name: str, partitions: int) -> None:
        """Make ``name`` exist (nothing to do for most brokers)."""

    # -- URLs --------------------------------------------------------------------------

    @abstractmethod
    def listener_url(self, source: str, group: str) -> str:
        """The URL of a listener of ``source`` in consumer group ``group``."""

    @abstractmethod
    def publisher_url(self, name: str) -> str:
        """The URL of a publisher to ``name`` (a source or a destination)."""

    def worker_options(self) -> dict[str, Any]:
        """Listener options for ``arroyo run`` workers: what a worker did not acknowledge
        comes back within seconds, not minutes."""
        return {}

    # -- writing and reading -----------------------------------------------------------

    @abstractmethod
    async def write(self, source: str, data: Sequence[bytes]) -> list[str]:
        """Put ``data`` on ``source`` as they are (they need not be Arroyo's), in this order;
        return where each went, as :meth:`where` gives it back from a dead letter. May wait
        until a listener takes them (ZeroMQ): start the listener first."""

    @abstractmethod
    def where(self, headers: dict[str, str]) -> str:
        """Where a dead letter's original came from, from its headers (as :meth:`write`
        said it)."""

    @abstractmethod
    async def _fetch(self, destination: str) -> list[tuple[bytes, dict[str, str]]]:
        """What arrived on ``destination`` since the last call, without waiting long: the
        bytes and the headers (or stream fields) of each."""

    async def received(self, destination: str) -> list[tuple[bytes, dict[str, str]]]:
        """Everything that arrived on ``destination`` so far, in arrival order."""
        got = self._read.setdefault(destination, [])
        got += await self._fetch(destination)
        return got

    async def messages(self, destination: str) -> list[Message]:
        """The messages that arrived on ``destination`` so far, decoded."""
        return [decode(data) for data, _ in await self.received(destination)]

    async def letters(self, destination: str) -> list[Letter]:
        """The dead letters that arrived on ``destination`` so far."""
        got = await self.received(destination)
        if not self.letters_are_events:
            return got
        letters = []
        for data, _ in got:
            event = decode(data)
            assert isinstance(event, Event), event
            headers = {key: str(value) for key, value in event.metadata.items()}
            letters.append((bytes(event.payload), headers))
        return letters

    async def close(self) -> None:
        """Delete what the test made; close the clients."""

    # -- connecting --------------------------------------------------------------------

    def refusing(self, source: str, secret: str) -> list[Refusal]:
        """Endpoints of ``source`` carrying the password ``secret`` that cannot get through:
        the broker refuses the password given in the URL, then in the YAML options; a port
        nothing listens on is given it in the URL."""
        raise AssertionError(f"{self.name} takes no credentials (see brokers.py)")

    def tls(self, source: str, group: str, ca: str) -> tuple[str, str, dict[str, Any]]:
        """Over TLS, with the CA file ``ca``: a listener URL of ``source``, a publisher URL
        to it, and the options of both."""
        raise AssertionError(f"{self.name} has no TLS (see brokers.py)")
