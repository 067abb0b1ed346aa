"""The in-process memory broker, reached through its topics."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tests.contract.adapters.base import Broker
from tests.contract.brokers import Declared


class Memory(Broker):
    typo = ("grup", "group")
    letters_are_events = True

    def __init__(self, declared: Declared, unique_name: Callable[[str], str]) -> None:
        from arroyo.brokers import memory

        super().__init__(declared, unique_name)
        self.memory = memory
        self._at: dict[str, int] = {}

    def listener_url(self, source: str, group: str) -> str:
        return f"memory://{source}?group={group}"

    def publisher_url(self, name: str) -> str:
        return f"memory://{name}"

    async def write(self, source: str, data: Sequence[bytes]) -> list[str]:
        return [str(self.memory.topic(source).append(item)) for item in data]

    def where(self, headers: dict[str, str]) -> str:
        return headers["arroyo.source.index"]

    async def _fetch(self, destination: str) -> list[tuple[bytes, dict[str, str]]]:
        entries = self.memory.topic(destination).entries
        at = self._at.get(destination, 0)
        self._at[destination] = len(entries)
        return [(data, {}) for data in entries[at:]]

    async def close(self) -> None:
        for name in self.made:
            self.memory.delete(name)
