"""``arroyo.Array.compression``: an optional field added to the schema, compatible both
ways, and data written before it existed still read (no broker)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastavro import schemaless_writer
from typer.testing import CliRunner

from arroyo import ArrayInfo, Event, decode, encode
from arroyo.cli import app
from arroyo.codec import Codec
from arroyo.formats.compression import compress
from arroyo.schema import SCHEMA_DIR, Schema, SchemaStore, builtin, envelope, load, previous

PREVIOUS = SCHEMA_DIR / "previous" / "arroyo.Message-0.1.avsc"


def _previous_array(tmp_path: Path) -> Path:
    """arroyo.Array as it was before ``compression``, from the previous envelope."""
    definition = json.loads(PREVIOUS.read_text())
    body = next(f for f in definition["fields"] if f["name"] == "body")
    event = next(b for b in body["type"] if b["name"] == "arroyo.Event")
    array = next(f for f in event["fields"] if f["name"] == "array")["type"][1]
    path = tmp_path / "arroyo.Array.avsc"
    path.write_text(json.dumps(array))
    return path


@pytest.mark.parametrize("mode", ["backward", "forward", "full"])
def test_the_new_array_schema_is_compatible_with_the_previous_one(
    tmp_path: Path, mode: str
) -> None:
    runner = CliRunner()
    for old, new in [
        (_previous_array(tmp_path), SCHEMA_DIR / "arroyo.Array.avsc"),
        (PREVIOUS, SCHEMA_DIR / "arroyo.Message.avsc"),
    ]:
        result = runner.invoke(app, ["schemas", "check", str(old), str(new), "--mode", mode])
        assert result.exit_code == 0, result.output
        assert result.output.startswith(f"compatible ({mode})")


def test_the_previous_envelope_differs_only_by_the_compression_field() -> None:
    [old] = previous()
    assert old.fingerprint != builtin().fingerprint
    assert "compression" in builtin().canonical and "compression" not in old.canonical


def _written_by_the_previous_release(event: Event, schema: Schema) -> bytes:
    record = {
        "id": event.id,
        "stream": event.stream,
        "seq": event.seq,
        "timestamp": event.timestamp,
        "body": (
            "arroyo.Event",
            {
                "metadata": {"frame": {"v": 3}},
                "array": {"dtype": event.array.dtype, "shape": list(event.array.shape)},
                "payload": bytes(event.payload),
            },
        ),
    }
    out = io.BytesIO()
    schemaless_writer(out, schema.parsed, record)
    return b"\xc3\x01" + schema.fingerprint + out.getvalue()


def test_data_written_before_the_field_existed_is_still_read() -> None:
    frame = np.arange(6, dtype="<u2").reshape(2, 3)
    event = Event.from_array(frame, stream="old", seq=1)
    [old] = previous()
    message = decode(_written_by_the_previous_release(event, old))
    assert isinstance(message, Event) and message.array == ArrayInfo("<u2", (2, 3))
    assert message.metadata == {"frame": 3} and np.array_equal(message.to_array(), frame)


def test_a_facility_envelope_of_the_previous_release_is_known_too() -> None:
    metadata = load(SCHEMA_DIR / "examples" / "frame-metadata-v1.avsc")
    [old] = previous()
    store = SchemaStore([metadata])
    assert store.get(envelope(metadata, old).fingerprint) is not None
    assert store.get(envelope(metadata).fingerprint) is not None


def test_uncompressed_events_are_written_with_a_null_compression() -> None:
    frame = np.arange(4, dtype="<u2")
    message = decode(encode(Event.from_array(frame)))
    assert isinstance(message, Event) and message.array == ArrayInfo("<u2", (4,), None)


def test_a_compressed_event_crosses_the_codec_compressed() -> None:
    frame = np.arange(64, dtype="<u2").reshape(8, 8)
    packed = compress(frame.tobytes(), "bslz4", 2)
    sent = Event(payload=packed, array=ArrayInfo("<u2", (8, 8), "bslz4"))
    received = Codec().decode(Codec().encode(sent))
    assert isinstance(received, Event) and received.array == sent.array
    assert bytes(received.payload) == packed
    assert np.array_equal(received.to_array(), frame)
