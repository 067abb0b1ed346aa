"""The documents of bluesky's data model (event_model) as the ``bluesky`` parser reads
them: pages and bulk documents expanded into single documents, the keys each kind must
have, and deserialized values (msgpack, JSON, pickle; numpy values) as JSON-like values.

``event_model`` (bluesky's own document package) is the oracle of the unpacking in the
tests; it is not needed at run time.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

from arroyo.errors import DecodeError
from arroyo.message import JSON, new_id, timestamp_ns


def expand(name: str, doc: dict[str, JSON]) -> list[tuple[str, dict[str, JSON]]]:
    """A page (or bulk document) as its single documents; any other document alone."""
    try:
        if name == "event_page":
            return [("event", event) for event in _unpack_page(doc, ("uid", "time", "seq_num"))]
        if name == "datum_page":
            return [("datum", datum) for datum in _unpack_datum_page(doc)]
        if name == "bulk_events":
            return [
                ("event", event)
                for events in doc.values()
                for event in (events if isinstance(events, list) else [events])
                if isinstance(event, dict)
            ]
        if name == "bulk_datum":
            ids, kwargs = doc["datum_ids"], doc["datum_kwarg_list"]
            assert isinstance(ids, list) and isinstance(kwargs, list)
            return [
                ("datum", {"datum_id": i, "resource": doc["resource"], "datum_kwargs": k})
                for i, k in zip(ids, kwargs, strict=True)
            ]
    except (KeyError, TypeError, ValueError, AssertionError) as exc:
        raise DecodeError(f"bluesky: malformed {name} document: {exc!r}") from None
    return [(name, doc)]


def _columns(value: JSON, length: int, what: str) -> dict[str, list[JSON]]:
    if not isinstance(value, dict) or not all(
        isinstance(v, list) and len(v) == length for v in value.values()
    ):
        raise ValueError(f"{what} must map each key to a list of {length} values")
    return value  # type: ignore[return-value]


def _unpack_page(page: dict[str, JSON], keys: tuple[str, ...]) -> list[dict[str, JSON]]:
    uids = page["uid"]
    if not isinstance(uids, list):
        raise ValueError("uid must be a list")
    n = len(uids)
    lists = {k: page[k] for k in keys}
    if not all(isinstance(v, list) and len(v) == n for v in lists.values()):
        raise ValueError(f"{', '.join(keys)} must be lists of the same length")
    data = _columns(page["data"], n, "data")
    timestamps = _columns(page["timestamps"], n, "timestamps")
    filled = _columns(page.get("filled", {}), n, "filled")
    out = []
    for i in range(n):
        event: dict[str, JSON] = {"descriptor": page["descriptor"]}
        event.update({k: v[i] for k, v in lists.items()})  # type: ignore[index]
        event["data"] = {k: v[i] for k, v in data.items()}
        event["timestamps"] = {k: v[i] for k, v in timestamps.items()}
        event["filled"] = {k: v[i] for k, v in filled.items()}
        out.append(event)
    return out


def _unpack_datum_page(page: dict[str, JSON]) -> list[dict[str, JSON]]:
    ids = page["datum_id"]
    if not isinstance(ids, list):
        raise ValueError("datum_id must be a list")
    kwargs = _columns(page.get("datum_kwargs", {}), len(ids), "datum_kwargs")
    return [
        {
            "datum_id": datum_id,
            "resource": page["resource"],
            "datum_kwargs": {k: v[i] for k, v in kwargs.items()},
        }
        for i, datum_id in enumerate(ids)
    ]


_REQUIRED = {
    "start": ("uid",),
    "stop": ("run_start",),
    "descriptor": ("uid", "run_start"),
    "event": ("descriptor",),
    "resource": ("uid",),
    "stream_resource": ("uid",),
    "datum": ("datum_id", "resource"),
}


def check(name: str, doc: dict[str, JSON]) -> None:
    """DecodeError when the ``name`` document lacks a key the parser needs (as a string),
    or has a ``time`` that is not a number of seconds a message timestamp can hold
    (finite, and as nanoseconds within a signed 64-bit integer: before the year 2262)."""
    for key in _REQUIRED.get(name, ()):
        if not isinstance(doc.get(key), str):
            raise DecodeError(f"bluesky: the {name} document has no string {key!r}")
    stamp = doc.get("time")
    if stamp is None:
        return
    if isinstance(stamp, bool) or not isinstance(stamp, int | float):
        raise DecodeError(f"bluesky: the {name} document's time is not a number: {stamp!r}")
    timestamp_ns(stamp, "s", f"bluesky: the {name} document's time")


def document_id(name: str, uid: JSON) -> str:
    """The message id of a document: its uid as 32 hex digits, or a hash of its key."""
    if not isinstance(uid, str):
        return new_id()
    try:
        return uuid.UUID(uid).hex
    except ValueError:
        return hashlib.blake2b(f"{name}:{uid}".encode(), digest_size=16).hexdigest()


def nanoseconds(value: JSON) -> int:
    """A document's ``time`` (seconds since the epoch) in nanoseconds; now without one."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value * 1_000_000_000)
    return time.time_ns()


def plain(value: Any, path: str) -> JSON:
    """A deserialized document as JSON-like values: tuples as lists, numpy values (and
    msgpack_numpy's packed arrays) as lists and numbers. DecodeError for anything else."""
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return value
    if type(value) in (list, tuple):  # not a named tuple such as msgpack's ExtType
        return [plain(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if b"nd" in value:
            return plain(_numpy_packed(value, path), path)
        out: dict[str, JSON] = {}
        for key, v in value.items():
            if isinstance(key, bytes):
                key = key.decode("utf-8", "replace")
            if not isinstance(key, str):
                raise DecodeError(f"bluesky: {path}: map keys must be strings, got {key!r}")
            out[key] = plain(v, f"{path}.{key}")
        return out
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars (pickled documents)
    if callable(tolist) and type(value).__module__ == "numpy":
        return plain(tolist(), path)
    raise DecodeError(f"bluesky: {path}: {type(value).__name__} is not a JSON-like value")


def _numpy_packed(value: dict[Any, Any], path: str) -> Any:
    """What msgpack_numpy packed: ``{b"nd": True, b"type", b"shape", b"data"}`` (an
    array) or ``{b"nd": False, b"type", b"data"}`` (a scalar)."""
    from arroyo._optional import require

    np = require("numpy", "numpy", "Reading numpy values in bluesky documents")
    try:
        kind = value.get(b"kind", b"")
        if kind not in (b"", ""):
            raise ValueError(f"dtype kind {kind!r} (structured or object arrays are refused)")
        dtype = np.dtype(value[b"type"])
        if dtype.hasobject or dtype.fields is not None:
            raise ValueError(f"dtype {dtype}")
        flat = np.frombuffer(value[b"data"], dtype=dtype)
        if value[b"nd"]:
            return flat.reshape(value[b"shape"]).tolist()
        return flat[0].item()
    except Exception as exc:
        raise DecodeError(f"bluesky: {path}: unreadable msgpack_numpy value: {exc}") from None
