"""Redis Streams -> operator -> Redis Streams, through a consumer group.

The source stream is pre-loaded with ``count`` entries as Arroyo's publisher writes
them (``kind``, ``stream``, ``seq``, ``id`` and the encoded message under ``data``);
every variant reads it in a consumer group of its own and appends to a stream of its own.

- Arroyo: a Block with the Redis Streams listener (reads 100 entries, at most 16 MiB,
  at a time), the passthrough operator and the Redis Streams publisher (pipelined
  ``XADD``); an entry is done once its ``XACK`` is answered.
- raw (redis-py with hiredis, synchronous): ``XREADGROUP`` as many entries, ``XADD``
  each entry's fields in one pipeline, then ``XACK`` the batch.

At 1 KiB the raw loop also runs checking each entry's ``data`` first, with fastavro
alone and with ``arroyo.decode``: the ceilings of a check (:mod:`bench.ceilings`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from bench.ceilings import CHECKS, ceiling_rows, checker
from bench.common import (
    Measurement,
    Row,
    Timing,
    best_of,
    lazy_row,
    run_variant,
    size_label,
    unique,
)

ADDRESS = os.environ.get("ARROYO_REDIS", "127.0.0.1:6379")
HOST, _, PORT = ADDRESS.rpartition(":")
BATCH = 100
BATCH_BYTES = 16 << 20
"""Arroyo's listener defaults: entries per read, and bytes per read."""


def _client() -> Any:
    import redis

    return redis.Redis(host=HOST, port=int(PORT))


def batch(size: int) -> int:
    return max(1, min(BATCH, BATCH_BYTES // size))


def preload(stream: str, count: int, size: int) -> None:
    """Append ``count`` encoded Events with the fields Arroyo's publisher writes."""
    from arroyo import decode
    from bench.kafka_kafka import events

    client = _client()
    pipe = client.pipeline(transaction=False)
    for i, data in enumerate(events(count, size)):
        message = decode(data)
        fields = {
            "kind": message.kind,
            "stream": message.stream,
            "seq": message.seq,
            "id": message.id,
            "data": data,
        }
        pipe.xadd(stream, fields)
        if i % 100 == 99:
            pipe.execute()
    pipe.execute()
    client.close()


async def arroyo(src: str, dst: str, group: str, count: int, lazy: bool = False) -> Timing:
    """A Block: Redis Streams listener -> Passthrough -> Redis Streams publisher (``lazy``:
    the listener reads each message as ``check: lazy`` does, else in full)."""
    from arroyo.brokers import open_listener, open_publisher
    from arroyo.runtime import Block
    from bench.harness import block_parser, measure_block

    listener = open_listener(f"redis://{ADDRESS}/{src}?group={group}", None, block_parser(lazy))
    publisher = open_publisher(f"redis://{ADDRESS}/{dst}")
    return await measure_block(Block(listener, None, [publisher], name="bench"), count)


def raw(src: str, dst: str, group: str, count: int, per_read: int, check: str = "") -> Timing:
    """The hand-written loop (see the module docstring). ``check``: each entry's ``data``
    is first checked, ``"fastavro"`` as a peer does by hand, ``"arroyo"`` by
    ``arroyo.decode`` (:func:`bench.ceilings.checker`)."""
    checked = checker(check)
    client = _client()
    client.xgroup_create(src, group, "0")
    latencies: list[float] = []
    done = 0
    began = end = 0.0
    while done < count:
        reply = client.xreadgroup(group, "raw", {src: ">"}, count=per_read, block=1000)
        if not reply:
            continue
        taken = time.monotonic()
        began = began or taken
        entries = reply[0][1]
        pipe = client.pipeline(transaction=False)
        for _, fields in entries:
            if checked is not None:
                checked(fields.get(b"data", b""))  # an entry without data is refused
            pipe.xadd(dst, fields)
        pipe.execute()  # raises on an error reply
        client.xack(src, group, *[entry_id for entry_id, _ in entries])
        end = time.monotonic()
        latencies += [end - taken] * len(entries)
        done += len(entries)
    client.close()
    return Timing(done, end - began, latencies)


def _variant(
    function: str,
    src: str,
    count: int,
    size: int,
    made: list[str],
    lazy: bool = False,
    check: str = "",
) -> Callable[[], Measurement]:
    def run() -> Measurement:
        dst = unique(f"rs-{function}{'-' + check if check else ''}")
        made.append(dst)
        args: dict[str, Any] = {"src": src, "dst": dst, "group": unique("group"), "count": count}
        if lazy:
            args["lazy"] = True
        if check:
            args["check"] = check
        if function == "raw":
            args["per_read"] = batch(size)
        result = run_variant("redis_streams", function, args, size)
        client = _client()
        if not result.error and client.xlen(dst) < count:
            result.error = f"{dst} holds fewer than {count} entries"
        client.delete(dst)
        client.close()
        return result

    return run


COUNTS = {  # (quick, full) messages per run
    1 << 10: (20_000, 100_000),
    1 << 20: (200, 1_000),
}


def run(quick: bool, repeat: int) -> list[Row]:
    """The rows at 1 KiB and 1 MiB."""
    rows = []
    for turn, (size, counts) in enumerate(COUNTS.items()):
        count = counts[0] if quick else counts[1]
        src = unique("rs-src")
        preload(src, count, size)
        made = [src]
        try:
            variants = [
                _variant("arroyo", src, count, size, made),
                _variant("raw", src, count, size, made),
                _variant("arroyo", src, count, size, made, lazy=True),
            ]
            if size < 1 << 20:  # the ceilings of a check
                variants += [_variant("raw", src, count, size, made, check=c) for c in CHECKS]
            a, b, lazy, *checking = best_of(variants, repeat, turn)
        finally:
            client = _client()
            client.delete(*made)
            client.close()
        target = 0.9 if size >= 1 << 20 else 0.6
        rows.append(Row("Redis Streams -> Redis Streams", size_label(size), a, b, target=target))
        rows.append(lazy_row("Redis Streams -> Redis Streams", size_label(size), lazy, b))
        if checking:
            rows += ceiling_rows("Redis Streams -> Redis Streams", size, a, b, checking)
    return rows
