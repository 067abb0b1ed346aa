"""Redis Streams, reached with redis-py (XADD, XRANGE)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from arroyo.testing import free_port
from tests.contract.adapters.base import Broker, Refusal, client_certificate, tls_address
from tests.contract.brokers import Declared


class RedisStreams(Broker):
    def __init__(self, declared: Declared, unique_name: Callable[[str], str], address: str) -> None:
        import redis.asyncio as aioredis

        super().__init__(declared, unique_name)
        self.address = address
        host, port = address.rsplit(":", 1)
        self.client = aioredis.Redis(host=host, port=int(port))
        self._last: dict[str, bytes] = {}

    def listener_url(self, source: str, group: str) -> str:
        return f"redis://{self.address}/{source}?group={group}&block_ms=50"

    def publisher_url(self, name: str) -> str:
        return f"redis://{self.address}/{name}"

    def worker_options(self) -> dict[str, Any]:
        return {"min_idle_ms": 1000, "claim_interval_ms": 200, "block_ms": 100}

    async def write(self, source: str, data: Sequence[bytes]) -> list[str]:
        async with self.client.pipeline(transaction=False) as pipe:
            for item in data:
                pipe.xadd(source, {"data": item})
            entries = await pipe.execute()
        return [entry.decode() for entry in entries]

    def where(self, headers: dict[str, str]) -> str:
        return headers["arroyo.source.entry"]

    async def _fetch(self, destination: str) -> list[tuple[bytes, dict[str, str]]]:
        last = self._last.get(destination)
        entries = await self.client.xrange(destination, b"-" if last is None else b"(" + last)
        got = []
        for entry, fields in entries:
            headers = {k.decode(): v.decode(errors="replace") for k, v in fields.items()}
            got.append((fields.get(b"data", b""), headers))
            self._last[destination] = entry
        return got

    async def close(self) -> None:
        if self.made:
            await self.client.delete(*self.made)
        await self.client.aclose()

    def refusing(self, source: str, secret: str) -> list[Refusal]:
        # The test server knows no user "nobody": it refuses the AUTH.
        url = f"redis://nobody:{secret}@{self.address}/{source}"
        options = {"username": "nobody", "password": secret, "connect_timeout": 2}
        closed = f"redis://nobody:{secret}@127.0.0.1:{free_port()}/{source}"
        quick = {"connect_timeout": 2}
        refused = "invalid username-password pair"
        return [
            Refusal(f"{url}?group=g", url, quick, refused),
            Refusal(self.listener_url(source, "g"), self.publisher_url(source), options, refused),
            Refusal(f"{closed}?group=g", closed, quick, "connection refused"),
        ]

    def tls(self, source: str, group: str, ca: str) -> tuple[str, str, dict[str, Any]]:
        address = tls_address("ARROYO_REDIS_TLS")
        return (
            f"rediss://{address}/{source}?group={group}&block_ms=50",
            f"rediss://{address}/{source}",
            {"ssl_ca": ca, **client_certificate()},
        )
