"""``format: bluesky-kafka``: Arroyo messages as bluesky-kafka documents.

Each record's value is ``msgpack.packb((name, doc))`` with numpy arrays packed by
``msgpack_numpy``: what ``bluesky_kafka.Publisher`` writes, so bluesky-kafka's
``BlueskyConsumer`` and ``RemoteDispatcher`` (and any bluesky callback behind them) read
what an Arroyo bridge publishes.

- Messages made by the ``bluesky`` or ``bluesky-kafka`` parsers are written back as the
  documents they came from: the Start's data is the start document, the Stop's the stop
  document, an Event's metadata (without ``document``) the document it names.
- Other runs (a detector's frames) become documents: the Start -> a ``start`` document
  (its data, plus ``uid``: the stream when it is a UUID, else a UUID made from it, and
  ``time``); the first Event -> a ``descriptor`` (stream ``primary``; its data keys are
  that Event's numbers, strings and booleans, and its array under ``image``) then an
  ``event``, each later Event -> an ``event`` (``seq_num`` from 1) with the same keys;
  the Stop -> a ``stop`` document (``exit_status`` from its data, default ``success``,
  ``num_events``, and the rest of its data).

Records have no key of their own (the publisher's default: the stream, i.e. the run's
start uid for bluesky runs).
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from arroyo._optional import require
from arroyo.errors import EncodeError
from arroyo.formats import Record
from arroyo.message import JSON, Event, Message, Start, Stop
from arroyo.parsers.bluesky import DOCUMENTS

msgpack = require("msgpack", "bluesky-kafka", "The bluesky-kafka format")
mpn = require("msgpack_numpy", "bluesky-kafka", "The bluesky-kafka format")

_NAMESPACE = uuid.UUID("5a4f0b5e-7d38-4a43-9d7e-6a8f2f0d3a10")
"""Namespace of the UUIDs made from stream names (uuid5), so they are stable."""
_LIMIT = 10_000


@dataclass
class _Run:
    uid: str
    descriptor: dict[str, Any] | None = None
    events: int = 0


class BlueskyKafkaFormat:
    """Writes bluesky-kafka documents (see the module documentation). ``stream_name``:
    the event stream of generated descriptors; ``data_key``: the name of an Event's
    array in them."""

    def __init__(self, stream_name: str = "primary", data_key: str = "image") -> None:
        self.stream_name = stream_name
        self.data_key = data_key
        self._runs: OrderedDict[str, _Run] = OrderedDict()

    def encode(self, message: Message) -> list[Record]:
        """The records of ``message`` (two for the first generated event of a run)."""
        documents = self._documents(message)
        try:
            return [
                Record(msgpack.packb((name, doc), default=mpn.encode, use_bin_type=True))
                for name, doc in documents
            ]
        except (TypeError, ValueError, OverflowError) as exc:
            raise EncodeError(
                f"bluesky-kafka: cannot pack {message.kind} {message.id}: {exc}"
            ) from None

    def _documents(self, message: Message) -> list[tuple[str, dict[str, Any]]]:
        seconds = message.timestamp / 1e9
        if isinstance(message, Start):
            doc: dict[str, Any] = dict(message.data)
            if not isinstance(doc.get("uid"), str):
                doc["uid"] = _uid(message.stream)
            doc.setdefault("time", seconds)
            self._remember(message.stream, _Run(doc["uid"]))
            return [("start", doc)]
        if isinstance(message, Stop):
            run = self._runs.pop(message.stream, None)
            doc = dict(message.data)
            if isinstance(doc.get("run_start"), str):
                return [("stop", doc)]
            run_start = run.uid if run is not None else _uid(message.stream)
            generated = {
                "uid": str(uuid.uuid5(_NAMESPACE, f"{run_start}:stop")),
                "run_start": run_start,
                "time": seconds,
                "exit_status": doc.pop("exit_status", "success"),
                "reason": doc.pop("reason", ""),
                "num_events": {self.stream_name: run.events} if run and run.descriptor else {},
            }
            return [("stop", {**generated, **doc})]
        name = message.metadata.get("document")
        if isinstance(name, str) and name in DOCUMENTS:
            return [(name, {k: v for k, v in message.metadata.items() if k != "document"})]
        return self._event(message, seconds)

    def _event(self, event: Event, seconds: float) -> list[tuple[str, dict[str, Any]]]:
        run = self._runs.get(event.stream)
        if run is None:
            run = self._remember(event.stream, _Run(_uid(event.stream)))
        values: dict[str, Any] = {
            k: v for k, v in event.metadata.items() if isinstance(v, bool | int | float | str)
        }
        if event.array is not None:
            values[self.data_key] = event.to_array()
        out: list[tuple[str, dict[str, Any]]] = []
        if run.descriptor is None:
            run.descriptor = {
                "uid": str(uuid.uuid5(_NAMESPACE, f"{run.uid}:{self.stream_name}")),
                "run_start": run.uid,
                "time": seconds,
                "name": self.stream_name,
                "data_keys": {k: _data_key(v) for k, v in values.items()},
                "object_keys": {},
                "configuration": {},
                "hints": {},
            }
            out.append(("descriptor", run.descriptor))
        keys = run.descriptor["data_keys"]
        missing = sorted(set(keys) - set(values))
        if missing:
            raise EncodeError(
                f"bluesky-kafka: event {event.id} lacks {', '.join(missing)}, which the first "
                "event of its run had (a descriptor's data keys are fixed)"
            )
        run.events += 1
        data = {k: values[k] for k in keys}
        out.append(
            (
                "event",
                {
                    "uid": str(uuid.uuid5(_NAMESPACE, f"{run.uid}:{event.id}")),
                    "descriptor": run.descriptor["uid"],
                    "time": seconds,
                    "seq_num": run.events,
                    "data": data,
                    "timestamps": {k: seconds for k in data},
                    "filled": {},
                },
            )
        )
        return out

    def _remember(self, stream: str, run: _Run) -> _Run:
        self._runs[stream] = run
        self._runs.move_to_end(stream)
        if len(self._runs) > _LIMIT:
            self._runs.popitem(last=False)
        return run


def _uid(stream: str) -> str:
    """``stream`` when it is a UUID (bluesky's start uid), else a UUID made from it."""
    try:
        return str(uuid.UUID(stream))
    except ValueError:
        return str(uuid.uuid5(_NAMESPACE, stream))


def _data_key(value: Any) -> dict[str, JSON]:
    if isinstance(value, bool):
        return {"source": "arroyo", "dtype": "boolean", "shape": []}
    if isinstance(value, int | float):
        return {"source": "arroyo", "dtype": "number", "shape": []}
    if isinstance(value, str):
        return {"source": "arroyo", "dtype": "string", "shape": []}
    return {
        "source": "arroyo",
        "dtype": "array",
        "shape": [int(n) for n in value.shape],
        "dtype_numpy": value.dtype.str,
    }
