"""The Redis pipeline the reliability tests run as `arroyo run` workers, and how they feed
its source stream."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arroyo import encode
from arroyo.message import Message

if TYPE_CHECKING:
    import redis


def write_config(
    folder: Path, redis_address: str, names: dict[str, str], grace: float = 10, **block: Any
) -> Path:
    """``folder/pipeline.yaml``: one block, source stream -> operator -> sink stream, with a
    dead-letter stream (``names``: ``source``, ``sink``, ``dlq``); ``block``: more keys of
    the block (``operator``...)."""
    settings = "".join(f"    {key}: {value}\n" for key, value in block.items())
    config = folder / "pipeline.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            blocks:
              - name: workers
                listener:
                  url: redis://{redis_address}/{names["source"]}?group=workers
                  min_idle_ms: 1000
                  claim_interval_ms: 200
                  block_ms: 100
                publishers: [redis://{redis_address}/{names["sink"]}]
                dead_letter: redis://{redis_address}/{names["dlq"]}
                grace_period: {grace}
            """
        )
        + settings
    )
    return config


def produce(redis_client: redis.Redis, stream: str, messages: list[Message]) -> list[bytes]:
    """XADD the messages as Arroyo's publisher writes them (pipelined, 1000 at a time);
    returns the entry ids."""
    ids: list[bytes] = []
    for first in range(0, len(messages), 1000):
        pipe = redis_client.pipeline(transaction=False)
        for message in messages[first : first + 1000]:
            pipe.xadd(stream, {"id": message.id, "data": encode(message)})
        ids += pipe.execute()
    return ids
