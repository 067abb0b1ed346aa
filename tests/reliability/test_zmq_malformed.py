"""Malformed instrument messages go to the dead letter with their raw parts; the bridge
keeps running and the next good message arrives."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import zmq
import zmq.asyncio

from arroyo import Event, Start, Stop
from arroyo.brokers import open_listener
from arroyo.brokers.zmq import ZmqListener
from arroyo.parsers import make_parser
from arroyo.runtime import Block
from arroyo.testing import Recorder

FRAME = np.arange(16, dtype=">u2").reshape(4, 4)
GOOD_HEADER = json.dumps({"type": "event", "dtype": ">u2", "shape": [4, 4]}).encode()


BAD = {
    "three parts": [GOOD_HEADER, FRAME.tobytes(), b"extra"],
    "header not JSON": [b"\x00\x01 not json", FRAME.tobytes()],
    "frame too short": [GOOD_HEADER, FRAME.tobytes()[:-2]],
    "frame too long": [GOOD_HEADER, FRAME.tobytes() + b"\x00\x00"],
    "big frame, wrong shape": [
        json.dumps({"dtype": "<u2", "shape": [1024, 1024]}).encode(),
        bytes(1 << 20),
    ],
    "unknown type": [json.dumps({"type": "pause"}).encode()],
}


@pytest.mark.parametrize("parser", ["json-frame", "msgpack-array"])
async def test_bad_messages_are_dead_lettered_and_the_bridge_goes_on(
    parser: str, until: Callable[..., Any]
) -> None:
    listener = open_listener("zmq+pull://127.0.0.1:0?bind=true", parser=make_parser(parser))
    out, dead = Recorder(), Recorder()
    block = Block(listener, None, [out], name=f"zmq-poison-{parser}", dead_letter=dead)
    task = asyncio.create_task(block.run())
    assert isinstance(listener, ZmqListener)
    await asyncio.wait_for(listener.ready.wait(), 10)
    assert listener.endpoint is not None
    context = zmq.asyncio.Context()
    push = context.socket(zmq.PUSH)
    push.connect(listener.endpoint)

    def header(fields: dict[str, Any]) -> bytes:
        if parser == "json-frame":
            return json.dumps(fields).encode()
        import msgpack

        return msgpack.packb(fields)

    bad = dict(BAD)
    if parser == "msgpack-array":  # the same cases with msgpack headers
        bad = {
            name: [
                header(json.loads(p)) if i == 0 and p[:1] == b"{" else p
                for i, p in enumerate(parts)
            ]
            for name, parts in BAD.items()
        }
        bad["header not msgpack"] = [b"\xc1\xc1", FRAME.tobytes()]
        del bad["header not JSON"]
    try:
        await push.send_multipart([header({"type": "start", "stream": "poison"})])
        for parts in bad.values():
            await push.send_multipart(parts)
            good = [header({"type": "event", "dtype": ">u2", "shape": [4, 4]}), FRAME.tobytes()]
            await push.send_multipart(good)  # and the next good message still arrives
        await push.send_multipart([header({"type": "stop"})])
        await until(lambda: len(out.published) == len(bad) + 2, what="every good message")
        await until(lambda: len(dead.dead_letters) == len(bad), what="every bad message")
    finally:
        block.stop()
        await asyncio.wait_for(task, 10)
        push.close(linger=0)
        context.term()
    start, *events, stop = out.published
    assert isinstance(start, Start) and isinstance(stop, Stop)
    assert all(isinstance(e, Event) and np.array_equal(e.to_array(), FRAME) for e in events)
    # what the listener received: a one-part message is its single frame
    expected = [parts[0] if len(parts) == 1 else parts for parts in bad.values()]
    assert [letter.data for letter in dead.dead_letters] == expected
    assert all(letter.error == "DecodeError" for letter in dead.dead_letters)
    assert all(letter.source["url"] == listener.name for letter in dead.dead_letters)
    reasons = " | ".join(letter.reason for letter in dead.dead_letters)
    assert "expected 1 or 2 parts" in reasons
    assert "but dtype >u2 and shape [4, 4] need 32" in reasons
    assert "dtype <u2 and shape [1024, 1024] need 2097152" in reasons
    assert block.stats.dead_lettered == len(bad)
