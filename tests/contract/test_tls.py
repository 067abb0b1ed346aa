"""TLS, on every broker that offers it (see brokers.py): Kafka on its TLS port
(``$ARROYO_KAFKA_TLS``), Redis over ``rediss://`` (``$ARROYO_REDIS_TLS``), RabbitMQ over
``amqps://`` (``$ARROYO_AMQPS``), the test brokers' CA in ``$ARROYO_TLS_CA``.

- A run goes through a Block over TLS, in order, and is acknowledged.
- With a CA that did not sign the broker's certificate, starting a listener or a
  publisher raises a ConnectError that says the certificate is not trusted and names
  the option to change; the same line ends ``arroyo run``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from arroyo.brokers import open_listener, open_publisher
from arroyo.errors import ConnectError
from arroyo.runtime import Block
from arroyo.testing import Recorder, make_run, publish_all
from tests.contract.adapters import Broker
from tests.contract.harness import WITHIN, one_block, one_line, run_arroyo, run_block

NOT_TRUSTED = "TLS certificate is not trusted"
"""What the error of a wrong CA says, on every broker (with the client's own reason)."""


async def refused(block: Block) -> str:
    """Run ``block``: the ConnectError it must raise at its start, as text."""
    with pytest.raises(ConnectError) as error:
        await asyncio.wait_for(block.run(), WITHIN)
    return str(error.value)


class TestTls:
    concern = "tls"

    async def test_a_run_goes_through_over_tls(
        self, broker: Broker, unique_name: Callable[[str], str]
    ) -> None:
        source = await broker.source()
        listener_url, publisher_url, options = broker.tls(
            source, unique_name("group"), os.environ.get("ARROYO_TLS_CA", "")
        )
        sent = make_run(5)
        out = Recorder()
        block = Block(open_listener(listener_url, options), None, [out], max_messages=len(sent))
        stats = await run_block(block, publish_all(publisher_url, sent, **options))
        assert out.published == sent
        assert stats.acknowledged == len(sent)

    async def test_a_wrong_ca_is_refused_saying_the_certificate_is_not_trusted(
        self, broker: Broker, unique_name: Callable[[str], str], wrong_ca: str
    ) -> None:
        source = await broker.source()
        listener_url, publisher_url, options = broker.tls(source, unique_name("group"), wrong_ca)
        options = {**options, "connect_timeout": 5}
        listener = open_listener(listener_url, options)
        idle = open_listener(f"memory://{unique_name('idle')}")
        errors = [
            await refused(Block(listener, publishers=[Recorder()])),
            await refused(Block(idle, publishers=[open_publisher(publisher_url, options)])),
        ]
        for text in errors:
            assert NOT_TRUSTED in text, text
            assert "ssl_ca" in text, text

    async def test_arroyo_run_with_a_wrong_ca_says_the_certificate_is_not_trusted(
        self, broker: Broker, unique_name: Callable[[str], str], wrong_ca: str, tmp_path: Path
    ) -> None:
        source = await broker.source()
        listener_url, _, options = broker.tls(source, unique_name("group"), wrong_ca)
        listener = {"url": listener_url, **options, "connect_timeout": 5}
        done = await run_arroyo("run", config=one_block(listener), folder=tmp_path)
        assert done.returncode != 0, done.stderr
        line = one_line(done)
        assert NOT_TRUSTED in line, line
