"""A wrong password never appears in errors or logs, on every broker with credentials
(see brokers.py).

The broker refuses the password (given in the URL, then in the YAML options), or the
port has nothing listening: starting a Block with such a listener, or such a publisher,
raises one ConnectError that names the URL, password hidden, and says why; neither the
error, nor the endpoint's name, nor any log line (at DEBUG, the client library's
included) shows the password. ``arroyo run --verbose``
on such a config fails without printing it either.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from arroyo.brokers import open_listener, open_publisher
from arroyo.errors import ConnectError
from arroyo.runtime import Block
from arroyo.testing import Recorder
from tests.contract.adapters import Broker
from tests.contract.harness import WITHIN, one_block, run_arroyo

SECRET = "s3cret-Hunter2"


async def refused(block: Block, endpoint: Any) -> str:
    """Run ``block`` (starting ``endpoint``): the ConnectError it must raise, as text."""
    assert SECRET not in endpoint.name
    with pytest.raises(ConnectError) as error:
        await asyncio.wait_for(block.run(), WITHIN)
    return str(error.value)


class TestSecrets:
    concern = "secrets"

    async def test_a_refused_password_is_in_no_error_and_no_log(
        self,
        broker: Broker,
        unique_name: Callable[[str], str],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        source = await broker.source()
        errors = []
        for refusal in broker.refusing(source, SECRET):
            listener = open_listener(refusal.listener, refusal.options)
            errors.append(await refused(Block(listener, publishers=[Recorder()]), listener))
            publisher = open_publisher(refusal.publisher, refusal.options)
            idle = open_listener(f"memory://{unique_name('idle')}")
            errors.append(await refused(Block(idle, publishers=[publisher]), publisher))
            for text in errors[-2:]:
                assert refusal.says in text, text  # the password was tried (or the port shut)
                assert source in text, text  # it says which endpoint failed
                assert SECRET not in text
        assert SECRET not in caplog.text

    async def test_arroyo_run_prints_no_refused_password(
        self, broker: Broker, tmp_path: Path
    ) -> None:
        source = await broker.source()
        for refusal in broker.refusing(source, SECRET):
            config = one_block({"url": refusal.listener, **refusal.options})
            done = await run_arroyo("run", "--verbose", config=config, folder=tmp_path)
            output = done.stdout + done.stderr
            assert done.returncode != 0, output[-3000:]
            assert source in done.stderr.strip().splitlines()[-1], output[-3000:]
            assert SECRET not in output
