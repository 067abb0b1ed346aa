"""Hostile and damaged bytes on every broker: a Block fed good messages mixed with nesting,
length and count bombs and random damage (truncation, flipped bits, random bytes, an
unknown fingerprint) runs to the end, delivers every message that decodes in order, and
dead-letters every other one, as its original bytes, with the codec's reason.

A 15 KB Start nesting lists 5,000 deep used to kill every worker with SIGSEGV inside
fastavro (issue 14). The inputs are first decoded in a process of their own, so that a
codec that crashes fails this test instead of killing pytest; that process also says
which inputs decode. The seed is printed; set ``ARROYO_FUZZ_SEED`` to replay a run.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import struct
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arroyo import DecodeError, Run, decode, encode
from arroyo.brokers import open_listener, open_publisher
from arroyo.codec import MAX_DEPTH
from arroyo.message import Message
from arroyo.runtime import Block
from arroyo.testing import DAMAGE, Recorder, bomb, damage, free_port

SEED = int(os.environ.get("ARROYO_FUZZ_SEED", "20261130"))
GOOD = 100  # Events between the run's Start and Stop
DAMAGED = 200  # damaged copies of good messages, 50 of each kind
BOMBS = [
    ("nesting", MAX_DEPTH),
    ("nesting", 500),
    ("nesting", 3000),
    ("nesting", 5000),
    ("nesting", 20_000),
    ("map nesting", MAX_DEPTH),
    ("map nesting", 5000),
    ("string length", 0),
    ("array count", 0),
    ("map count", 0),
    ("negative count", 0),
    ("block size", 0),
    ("long number", 0),
    ("union branch", 0),
]  # ("items" needs a 1 MB message: more than Kafka takes by default; a unit test has it)

DECODE_ALL = """
import json, struct, sys
from arroyo import DecodeError, decode
data = open(sys.argv[1], "rb").read()
verdicts, at = [], 0
while at < len(data):
    (size,) = struct.unpack_from(">I", data, at)
    try:
        decode(data[at + 4 : at + 4 + size])
        verdicts.append(None)
    except DecodeError as exc:
        verdicts.append(str(exc))
    at += 4 + size
print(json.dumps(verdicts))
"""


def nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


def fuzz_inputs(seed: int) -> tuple[list[bytes], set[bytes]]:
    """A run of good messages (nesting close to the limit, payloads of random bytes) with
    bombs and damaged copies of them put in at random places, good ones in their order;
    and the inputs no reader may accept (all but those with flipped bits)."""
    rnd = random.Random(seed)
    run = Run("fuzz")
    good: list[Message] = [run.start({"sample": "Si", "deep": nested(MAX_DEPTH - 2)})]
    good += [
        run.event({"i": i, "tags": ["a", i, None], "m": {"x": [i, 0.5]}}, rnd.randbytes(64))
        for i in range(GOOD)
    ]
    good.append(run.stop({"frames": GOOD}))
    inputs = [encode(m) for m in good]
    bad = [bomb(kind, size) for kind, size in BOMBS]
    kinds = [DAMAGE[i % len(DAMAGE)] for i in range(DAMAGED)]  # every kind in turn
    damaged = [damage(rnd.choice(inputs), rnd, kind) for kind in kinds]
    never = set(bad) | {data for kind, data in damaged if kind != "bits flipped"}
    for item in bad + [data for _, data in damaged]:
        inputs.insert(rnd.randrange(len(inputs) + 1), item)
    return inputs, never


def verdicts(inputs: list[bytes], folder: Path) -> list[str | None]:
    """Decode every input in a process of its own: None for each that decodes, else the
    DecodeError's reason. Fails (naming the exit code) when that process dies."""
    path = folder / "inputs.bin"
    path.write_bytes(b"".join(struct.pack(">I", len(d)) + d for d in inputs))
    done = subprocess.run(
        [sys.executable, "-c", DECODE_ALL, str(path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (
        f"decoding the fuzz inputs killed the process ({done.returncode}): {done.stderr[-3000:]}"
    )
    found: list[str | None] = json.loads(done.stdout)
    assert len(found) == len(inputs)
    return found


def expectations(folder: Path) -> tuple[list[bytes], list[Message], Counter[Any]]:
    """The fuzz inputs and what a Block must do with them: the messages it delivers (in
    order) and the dead letters it sends, as a multiset of (original bytes, reason)."""
    print(f"fuzz seed {SEED} (ARROYO_FUZZ_SEED={SEED} replays it)")
    inputs, never = fuzz_inputs(SEED)
    found = verdicts(inputs, folder)
    wrong = [d[:60] for d, reason in zip(inputs, found, strict=True) if d in never and not reason]
    assert not wrong, f"decoded bytes that no reader may accept: {wrong}"
    delivered = [decode(data) for data, reason in zip(inputs, found, strict=True) if not reason]
    letters = Counter((d, r) for d, r in zip(inputs, found, strict=True) if r is not None)
    assert all(reason for _, reason in letters)
    assert sum(letters.values()) > len(BOMBS) + DAMAGED // 2  # most damage cannot be read
    print(f"{len(inputs)} inputs: {len(delivered)} decode, {sum(letters.values())} do not")
    return inputs, delivered, letters


async def test_hostile_input_is_dead_lettered_and_the_rest_delivered_in_order(
    broker: Any, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    inputs, delivered, letters = expectations(tmp_path)
    source, dead, group = unique_name("source"), unique_name("dead"), unique_name("group")
    broker.create(source)
    broker.create(dead)
    broker.write_raw(source, *inputs)
    out = Recorder()
    block = Block(
        open_listener(broker.listener(source, group)),
        None,
        [out],
        dead_letter=open_publisher(broker.publisher(dead)),
        max_messages=len(inputs),
    )
    stats = await asyncio.wait_for(block.run(), 120)  # returns: the Block ran to the end

    assert out.published == delivered
    bad = sum(letters.values())
    assert (stats.received, stats.published) == (len(inputs), len(delivered))
    assert (stats.dead_lettered, stats.acknowledged) == (bad, len(inputs))
    found = broker.dead_letters(dead, bad)
    for _, headers in found:
        assert headers["arroyo.dead-letter.error"] == DecodeError.__name__
    got = Counter((data, headers["arroyo.dead-letter.reason"]) for data, headers in found)
    assert got == letters


async def test_hostile_input_over_zeromq(tmp_path: Path) -> None:
    """ZeroMQ has no acknowledgements: the same inputs over PUSH/PULL, dead letters sent
    (as Events) to a PULL socket of the test."""
    import zmq
    import zmq.asyncio

    inputs, delivered, letters = expectations(tmp_path)
    context = zmq.asyncio.Context()
    letters_in = context.socket(zmq.PULL)
    port = free_port()
    letters_in.bind(f"tcp://127.0.0.1:{port}")
    listener = open_listener("zmq+pull://127.0.0.1:0?bind=true")
    out = Recorder()
    block = Block(
        listener,
        None,
        [out],
        dead_letter=open_publisher(f"zmq+push://127.0.0.1:{port}"),
        max_messages=len(inputs),
    )
    task = asyncio.create_task(block.run())
    push = context.socket(zmq.PUSH)
    try:
        await asyncio.wait_for(listener.ready.wait(), 10)  # type: ignore[attr-defined]
        push.connect(listener.endpoint)  # type: ignore[attr-defined]
        for data in inputs:
            await push.send(data)
        stats = await asyncio.wait_for(task, 120)
        received = [
            decode(await asyncio.wait_for(letters_in.recv(), 10))
            for _ in range(sum(letters.values()))
        ]
    finally:
        block.stop()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)
        push.close(linger=0)
        letters_in.close(linger=0)
        context.term()
    assert out.published == delivered
    assert (stats.dead_lettered, stats.published) == (sum(letters.values()), len(delivered))
    got = Counter(
        (bytes(m.payload), m.metadata["arroyo.dead-letter.reason"])  # type: ignore[union-attr]
        for m in received
    )
    assert got == letters
