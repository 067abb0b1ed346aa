"""An unknown option is named in the error, with the broker, on every broker.

Opening a listener or a publisher with an option the connector does not know raises a
ConfigError naming the option and the broker (not only in the URL it shows); a misspelt
option is answered with the one it means. ``arroyo run`` on a YAML with an unknown
option fails before anything starts, in one line naming the file, the place in it, the
option and the broker.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from arroyo.brokers import open_listener, open_publisher
from arroyo.errors import ConfigError
from tests.contract.adapters import Broker
from tests.contract.harness import one_block, one_line, run_arroyo

UNKNOWN = "colour_depth"


def without_urls(text: str) -> str:
    """``text`` with the URLs it shows taken out (a URL names its broker by its scheme)."""
    return re.sub(r"\S+://\S+", "<url>", text)


class TestOptions:
    concern = "options"

    async def test_an_unknown_option_is_named_with_the_broker(
        self, broker: Broker, unique_name: Callable[[str], str]
    ) -> None:
        source = await broker.source()
        listener = broker.listener_url(source, unique_name("group"))
        publisher = broker.publisher_url(source)
        for make, url in ((open_listener, listener), (open_publisher, publisher)):
            with pytest.raises(ConfigError) as error:
                make(url, {UNKNOWN: 3})
            text = without_urls(str(error.value))
            assert f"'{UNKNOWN}'" in text, text
            assert re.search(rf"\b{broker.name}\b", text), f"the broker is not named: {text}"

    async def test_a_misspelt_option_is_answered_with_the_one_it_means(
        self, broker: Broker, unique_name: Callable[[str], str]
    ) -> None:
        source = await broker.source()
        misspelt, meant = broker.typo
        with pytest.raises(ConfigError) as error:
            open_listener(broker.listener_url(source, unique_name("group")), {misspelt: 1})
        assert f"did you mean '{meant}'" in str(error.value), str(error.value)

    async def test_arroyo_run_names_the_unknown_option_and_the_broker(
        self, broker: Broker, unique_name: Callable[[str], str], tmp_path: Path
    ) -> None:
        source = await broker.source()
        listener = {"url": broker.listener_url(source, unique_name("group")), UNKNOWN: 3}
        done = await run_arroyo("run", config=one_block(listener), folder=tmp_path)
        assert done.returncode == 2, done.stderr
        line = one_line(done)
        assert f"{tmp_path / 'pipeline.yaml'}: blocks[0] (intake).listener: " in line, line
        assert f"'{UNKNOWN}'" in line, line
        assert re.search(rf"\b{broker.name}\b", without_urls(line)), line
