"""Damaged instrument messages never kill a worker: every parser refuses them with a
DecodeError, or reads them; nothing else escapes, nothing crashes, nothing hangs.

The Avro codec has its own fuzz test (``tests/reliability/test_fuzz.py``). This is the
same promise for the formats that come from instruments over the network (stream2 CBOR
with its compressed frames, msgpack-array, json-frame, ESS FlatBuffers, bluesky
documents). Valid messages are damaged at random (bits flipped, bytes overwritten,
inserted or cut off, a part dropped). Each format's inputs are parsed in a process of
their own, which also reads every Event's array (decompressing it) as an operator
would, so a parser or decompressor that crashes fails this test instead of killing
pytest.
"""

from __future__ import annotations

import json
import pickle
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.parsers.ess_buffers import buffers

SEED = 20261203
COUNT = 300
"""Damaged inputs per format."""

PARSE_ALL = """
import json, pickle, resource, signal, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # a bomb is a MemoryError
from arroyo.errors import DecodeError
from arroyo.parsers import make_parser

def hang(*_):
    raise TimeoutError("still parsing after 10 s")

signal.signal(signal.SIGALRM, hang)
parser = make_parser(sys.argv[1])
verdicts = []
for parts in pickle.loads(open(sys.argv[2], "rb").read()):
    signal.alarm(10)
    try:
        parsed = parser.parse(parts[0] if len(parts) == 1 else parts)
        for message in parsed if isinstance(parsed, list) else [parsed]:
            if getattr(message, "array", None) is not None:
                message.to_array()
        verdicts.append("read")
    except DecodeError:
        verdicts.append("refused")
    except Exception as exc:
        verdicts.append(f"{type(exc).__name__}: {exc}"[:300])
    signal.alarm(0)
print(json.dumps(verdicts))
"""


def _framed(format: str) -> list[list[bytes]]:
    """A run (Start, three Events, Stop) as the simulator sends it in ``format``
    (``stream2:COMPRESSION`` for stream2)."""
    from arroyo.codec import default_codec
    from arroyo.simulate import _encoder, frame

    name, _, compression = format.partition(":")
    encode = _encoder(name, default_codec(), compression or "none")
    run = [encode("start", "run", 0, {"frames": 3, "shape": [16, 16], "dtype": "uint16"}, None)]
    for i in range(3):
        fields = {"frame": i, "timestamp": 1_700_000_000_000_000_000 + i}
        run.append(encode("event", "run", i + 1, fields, frame(i, (16, 16), "uint16")))
    run.append(encode("stop", "run", 4, {"frames": 3}, None))
    return [[bytes(part) for part in parts] for parts in run]


def _bluesky() -> list[list[bytes]]:
    """A run's documents in bluesky's 0MQ wire format (``PREFIX NAME DOCUMENT``), with
    msgpack and with JSON."""
    import msgpack

    start = {"uid": "s-1", "time": 1700000000.5, "plan_name": "scan", "detectors": ["det"]}
    keys = {"det": {"dtype": "number", "shape": [], "source": "SIM:det"}}
    descriptor = {"uid": "d-1", "run_start": "s-1", "time": 1.7e9, "data_keys": keys}
    event = {
        "uid": "e-1",
        "descriptor": "d-1",
        "seq_num": 1,
        "time": 1.7e9,
        "data": {"det": 1.5},
        "timestamps": {"det": 1.7e9},
        "filled": {},
    }
    stop = {"uid": "x-1", "run_start": "s-1", "time": 1.7e9, "exit_status": "success"}
    documents = [("start", start), ("descriptor", descriptor), ("event", event), ("stop", stop)]
    return [
        [b" ".join([b"", name.encode(), dumps(doc)])]
        for dumps in (msgpack.dumps, lambda doc: json.dumps(doc).encode())
        for name, doc in documents
    ]


def _valid(format: str) -> list[list[bytes]]:
    if format == "ess":
        return [[buffer] for buffer in buffers().values()]
    if format == "bluesky":
        return _bluesky()
    return _framed(format)


def _damaged(parts: list[bytes], rnd: random.Random) -> list[bytes]:
    """``parts`` with one of them damaged, and sometimes one dropped."""
    damaged = [bytearray(part) for part in parts]
    part = rnd.choice([p for p in damaged if p] or damaged)
    at = rnd.randrange(max(len(part), 1))
    kind = rnd.randrange(5)
    if kind == 0:
        for _ in range(rnd.randint(1, 8)):
            part[rnd.randrange(len(part))] ^= 1 << rnd.randrange(8)
    elif kind == 1:
        del part[at:]
    elif kind == 2:
        part[at:at] = rnd.randbytes(rnd.randint(1, 16))
    elif kind == 3:  # large lengths and counts, CBOR's and msgpack's 8-byte heads
        for _ in range(rnd.randint(1, 4)):
            part[rnd.randrange(len(part))] = rnd.choice([0x00, 0x1B, 0x7F, 0x80, 0x9B, 0xBB, 0xFF])
    else:
        part[at : at + 8] = b"\xff" * 8
    if len(damaged) > 1 and rnd.random() < 0.1:
        damaged.pop(rnd.randrange(len(damaged)))
    return [bytes(p) for p in damaged]


@pytest.mark.parametrize(
    "format",
    [
        "stream2:none",
        "stream2:bslz4",
        "stream2:lz4",
        "msgpack-array",
        "json-frame",
        "ess",
        "bluesky",
    ],
)
def test_damaged_messages_are_refused_with_a_decode_error_or_read(
    format: str, tmp_path: Path
) -> None:
    rnd = random.Random(f"{SEED}-{format}")
    valid = _valid(format)
    inputs = valid + [_damaged(rnd.choice(valid), rnd) for _ in range(COUNT)]
    path = tmp_path / "inputs.pickle"
    path.write_bytes(pickle.dumps(inputs))
    name = format.partition(":")[0]
    done = subprocess.run(
        [sys.executable, "-c", PARSE_ALL, name, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (
        f"parsing damaged {format} killed the process ({done.returncode}): {done.stderr[-3000:]}"
    )
    verdicts: list[str] = json.loads(done.stdout)
    assert verdicts[: len(valid)] == ["read"] * len(valid), "the undamaged ones are read"
    escaped = [v for v in verdicts if v not in ("read", "refused")]
    assert not escaped, f"{len(escaped)} damaged {format} inputs raised: {escaped[:5]}"
    assert verdicts.count("refused") > COUNT // 3, "most damage must be seen"
