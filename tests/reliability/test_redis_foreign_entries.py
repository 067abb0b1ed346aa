"""An entry another tool wrote on a Redis stream (fields, no ``data`` field) goes to the
dead-letter stream naming its fields; the rest flows. What every broker does with poison
(garbage, truncated, an operator that raises...) is tested once for all in
tests/contract/test_dead_letter.py."""

from __future__ import annotations

import pytest
import redis

from arroyo import DecodeError, Run, encode
from arroyo.brokers import open_listener, open_publisher
from arroyo.message import Message
from arroyo.runtime import Block

pytestmark = pytest.mark.redis


async def test_an_entry_another_tool_wrote_goes_to_the_dead_letter_with_its_fields(
    redis_address: str, redis_client: redis.Redis, redis_names: dict[str, str]
) -> None:
    run = Run("scan-9")
    good: list[Message] = [run.start({"sample": "Si"}), run.event({"i": 0}), run.stop()]
    redis_client.xadd(redis_names["source"], {"data": encode(good[0])})
    foreign = redis_client.xadd(redis_names["source"], {"temperature": b"21.5"})
    for message in good[1:]:
        redis_client.xadd(redis_names["source"], {"data": encode(message)})

    block = Block(
        open_listener(f"redis://{redis_address}/{redis_names['source']}?group=g&block_ms=20"),
        None,
        [open_publisher(f"redis://{redis_address}/{redis_names['sink']}")],
        dead_letter=open_publisher(f"redis://{redis_address}/{redis_names['dlq']}"),
        max_messages=len(good) + 1,
    )
    stats = await block.run()

    sink = [fields[b"id"].decode() for _, fields in redis_client.xrange(redis_names["sink"])]
    assert sink == [m.id for m in good]
    [(_, letter)] = redis_client.xrange(redis_names["dlq"])
    assert letter[b"arroyo.source.entry"] == foreign
    assert letter[b"arroyo.source.fields"] == b"temperature"
    assert letter[b"arroyo.dead-letter.error"] == DecodeError.__name__.encode()
    assert stats.dead_lettered == 1
    assert redis_client.xpending(redis_names["source"], "g")["pending"] == 0
