"""Bad input on a Redis stream goes to the dead-letter stream with its reason; the rest flows."""

from __future__ import annotations

import pytest
import redis

from arroyo import Run, encode
from arroyo.brokers import open_listener, open_publisher
from arroyo.message import Message
from arroyo.runtime import Block, Operator, RetryPolicy

pytestmark = pytest.mark.redis


async def test_poison_goes_to_the_dead_letter_and_the_rest_flows(
    redis_address: str,
    redis_client: redis.Redis,
    redis_names: dict[str, str],
    explode: Operator,
) -> None:
    run = Run("scan-9")
    good: list[Message] = [run.start({"sample": "Si"})]
    good += [run.event({"i": i}, b"frame %d" % i) for i in range(10)]
    exploding = run.event({"i": 10, "explode": True}, b"saturated frame")
    truncated = encode(run.event({"i": 11}, b"x" * 100))[:-7]
    bad: list[tuple[str, dict[str, bytes]]] = [
        ("garbage", {"data": b"GARBAGE, not Avro at all"}),
        ("truncated", {"data": truncated}),
        ("foreign", {"temperature": b"21.5"}),  # an entry some other tool wrote
        ("exploding", {"data": encode(exploding)}),
    ]
    poisoned: dict[bytes, tuple[str, dict[str, bytes]]] = {}
    for index, message in enumerate(good):
        redis_client.xadd(redis_names["source"], {"data": encode(message)})
        if index % 3 == 0 and bad:  # poison in between the good ones
            label, fields = bad.pop(0)
            poisoned[redis_client.xadd(redis_names["source"], fields)] = (label, fields)
    stop = run.stop()
    redis_client.xadd(redis_names["source"], {"data": encode(stop)})
    good.append(stop)

    block = Block(
        open_listener(f"redis://{redis_address}/{redis_names['source']}?group=g&block_ms=20"),
        explode,
        [open_publisher(f"redis://{redis_address}/{redis_names['sink']}")],
        dead_letter=open_publisher(f"redis://{redis_address}/{redis_names['dlq']}"),
        retry=RetryPolicy(attempts=2, initial=0.001, maximum=0.002),
        max_messages=len(good) + len(poisoned),
    )
    stats = await block.run()

    sink = [fields[b"id"].decode() for _, fields in redis_client.xrange(redis_names["sink"])]
    assert sink == [m.id for m in good]  # everything good, in order
    letters = {
        fields[b"arroyo.source.entry"]: fields
        for _, fields in redis_client.xrange(redis_names["dlq"])
    }
    assert set(letters) == set(poisoned)
    reasons = {}
    for entry, (label, fields) in poisoned.items():
        letter = letters[entry]
        if "data" in fields:
            assert letter[b"data"] == fields["data"]  # the original bytes, to replay
        reasons[label] = (
            letter[b"arroyo.dead-letter.error"].decode(),
            letter[b"arroyo.dead-letter.reason"].decode(),
            letter[b"arroyo.dead-letter.attempts"].decode(),
        )
        assert letter[b"arroyo.source.stream"].decode() == redis_names["source"]
        assert letter[b"arroyo.dead-letter.block"] == b"block"
    assert reasons["garbage"][0] == "DecodeError"
    assert reasons["garbage"][1].startswith("not Arroyo data")
    assert "truncated" in reasons["truncated"][1]
    assert reasons["foreign"][0] == "DecodeError"
    foreign = letters[next(e for e, (label, _) in poisoned.items() if label == "foreign")]
    assert foreign[b"arroyo.source.fields"] == b"temperature"
    assert reasons["exploding"] == (
        "ValueError",
        "cannot integrate frame 11: detector saturated",
        "2",
    )
    assert stats.dead_lettered == 4
    assert redis_client.xpending(redis_names["source"], "g")["pending"] == 0
