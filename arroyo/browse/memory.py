"""Browse an in-process ``memory://NAME`` topic (this process only: the demo, tests).

Reads the topic's log by index, without a consumer group: nothing is taken, no group is
made, and a topic that does not exist is not created (unless waiting for it).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from arroyo.brokers import BrokerURL
from arroyo.browse.base import Browser, Reading, Record, browse_options
from arroyo.errors import ConfigError


class MemoryBrowser(Browser):
    """Reads a memory topic's entries by index."""

    def __init__(self, topic: str, reading: Reading) -> None:
        self.topic = topic
        self.reading = reading
        self._start = 0
        self._end = 0

    @property
    def name(self) -> str:
        return f"memory://{self.topic}"

    async def open(self) -> None:
        """Note how many entries the topic has (its end)."""
        from arroyo.brokers.memory import _TOPICS

        found = _TOPICS.get(self.topic)
        self._end = len(found.entries) if found is not None else 0
        self._start = self._end if self.reading.from_end else 0

    async def records(self) -> AsyncGenerator[Record, None]:
        from arroyo.brokers.memory import _TOPICS, topic

        index = self._start
        while True:
            if self.reading.exit_at_end:
                if index >= self._end:
                    return
                log = _TOPICS[self.topic]
            else:
                log = topic(self.topic)  # waiting for it: an empty topic is no topic
                while index >= len(log.entries):
                    await log.wait()
            yield Record(log.entries[index], {"url": self.name, "index": index})
            index += 1

    async def close(self) -> None:
        """Nothing to give back."""


def browser(url: BrokerURL, options: dict[str, Any], reading: Reading) -> MemoryBrowser:
    """``memory://NAME``."""
    browse_options(url, options, {}, ("group", "stop_at_end"))
    name = (url.host or "") + (f"/{url.path}" if url.path else "")
    if not name:
        raise ConfigError(f"{url}: a memory URL needs a name, as in memory://frames")
    return MemoryBrowser(name, reading)
