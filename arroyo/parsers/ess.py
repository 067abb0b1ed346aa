"""``ess``: ESS streaming data types (FlatBuffers over Kafka), as Arroyo messages.

The European Spallation Source's data acquisition and file-writer exchange FlatBuffers
whose 4-character file identifier (bytes 4 to 8) names the schema. Read with the
``ess-streaming-data-types`` package (the ``ess`` extra), from
``kafka://HOST:PORT/TOPIC?group=G&parser=ess``:

- ``pl72`` (run start) -> :class:`~arroyo.message.Start`, ``stream`` its ``job_id``,
  ``data`` its fields (``job_id``, ``filename``, ``start_time`` and ``stop_time`` in ms,
  ``run_name``, ``nexus_structure``, ``service_id``, ``instrument_name``, ``broker``,
  ``metadata``, ``control_topic``, and ``detector_spectrum_map`` when present);
- ``6s4t`` (run stop) -> :class:`~arroyo.message.Stop` (``stop_time``, ``run_name``,
  ``job_id``, ``service_id``, ``command_id``). The timestamp of a Start or Stop is its
  ``start_time`` or ``stop_time`` (now when 0); a time after the year 2262, whose
  nanoseconds a timestamp cannot hold, is a DecodeError naming the field;
- ``ad00`` (area detector) -> an Event whose array is the image (``to_array()``),
  metadata ``source_name``, ``unique_id``, ``timestamp_ns``, ``attributes`` (each with
  ``name``, ``description``, ``source``, ``data``);
- ``da00`` (data array) -> an Event whose array is the variable named ``signal`` (else
  the first array); metadata ``source_name``, ``timestamp_ns``, ``signal`` (its name)
  and ``variables``: each with ``name``, ``unit``, ``label``, ``source``, ``axes``,
  ``shape`` and, but for the signal, its ``data``;
- ``ev44`` (neutron events) -> an Event without payload; metadata ``source_name``,
  ``message_id`` and the arrays ``reference_time``, ``reference_time_index``,
  ``time_of_flight``, ``pixel_id`` (array values: :mod:`arroyo.formats.arrays`);
- ``f144`` (log data) -> an Event without payload; metadata ``source_name`` and
  ``value`` (a number or a list of numbers), ``timestamp`` the value's time.

Every Event's metadata also has ``schema``: its 4-character id. Events belong to the run
of the latest ``pl72`` not yet stopped (``stream`` ""; when there is none); ``seq``
counts the messages of a run (Start 0). Any other identifier, a buffer too short to have
one, or a FlatBuffer that does not deserialize raises DecodeError naming it (a dead
letter). The ``ess`` publisher format (:mod:`arroyo.formats.ess`) writes them back.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from arroyo._optional import require
from arroyo.errors import DecodeError
from arroyo.formats.arrays import from_numpy
from arroyo.message import JSON, Event, Message, Start, Stop, timestamp_ns

if TYPE_CHECKING:
    from arroyo.runtime.listener import Raw

sdt = require("streaming_data_types", "ess", "The ess parser")
np = require("numpy", "ess", "The ess parser")

KNOWN = ("ad00", "da00", "ev44", "f144", "pl72", "6s4t")
"""The FlatBuffer identifiers the parser reads."""

_LIMIT = 1000


class EssCounter:
    """Frame accounting of ESS sources (:mod:`arroyo.runtime.frames`): ``ad00``
    ``unique_id`` and ``ev44`` ``message_id``, a lane per schema and ``source_name``.
    These count across runs, so a run's first frame is the first one seen."""

    def lanes(self, start: Start) -> Iterable[str]:
        """None known at the start."""
        return ()

    def number(self, event: Event) -> tuple[str, int] | None:
        """``("ad00:SOURCE", unique_id)`` or ``("ev44:SOURCE", message_id)``."""
        schema, source = event.metadata.get("schema"), event.metadata.get("source_name")
        if not isinstance(schema, str) or not isinstance(source, str):
            return None
        key = {"ad00": "unique_id", "ev44": "message_id"}.get(schema)
        number = event.metadata.get(key) if key else None
        if isinstance(number, int) and not isinstance(number, bool):
            return f"{schema}:{source}", number
        return None

    def first(self, start: Start | None, lane: str) -> int | None:
        """Unknown: the first seen."""
        return None

    def last(self, start: Start | None, stop: Stop, lane: str) -> int | None:
        """Unknown: the last seen."""
        return None


class EssParser:
    """Parses ESS FlatBuffers (see the module documentation)."""

    frame_counter = EssCounter

    def __init__(self) -> None:
        self._next_seq: OrderedDict[str, int] = OrderedDict()  # open runs -> next seq

    def parse(self, data: Raw) -> Message:
        """The Start, Event or Stop of one FlatBuffer; DecodeError naming what is wrong."""
        if isinstance(data, list):
            if len(data) != 1:
                raise DecodeError(f"ess: expected 1 part (a FlatBuffer), received {len(data)}")
            data = data[0]
        buffer = data if isinstance(data, bytes) else bytes(data)
        if len(buffer) < 8:
            raise DecodeError(
                f"ess: {len(buffer)} bytes is too short for a FlatBuffer with an identifier"
            )
        ident = buffer[4:8].decode("ascii", "backslashreplace")
        if ident not in KNOWN:
            raise DecodeError(
                f"ess: unknown FlatBuffer identifier {ident!r} (known: {', '.join(KNOWN)})"
            )
        try:
            decoded = sdt.DESERIALISERS[ident](buffer)
            return self._message(ident, decoded)
        except DecodeError:
            raise
        except Exception as exc:
            raise DecodeError(
                f"ess: malformed {ident} FlatBuffer of {len(buffer)} bytes "
                f"({type(exc).__name__}: {exc})"
            ) from None

    def _message(self, ident: str, d: Any) -> Message:
        if ident == "pl72":
            stream = d.job_id
            _ns(ident, "stop_time", d.stop_time)  # in data only: refused as the Stop's is
            data: dict[str, JSON] = {
                "schema": ident,
                **{k: getattr(d, k) for k in _PL72_FIELDS},
            }
            if d.detector_spectrum_map is not None:
                spectra = d.detector_spectrum_map
                data["detector_spectrum_map"] = {
                    "spectrum_numbers": from_numpy(spectra.spectrum_numbers),
                    "detector_ids": from_numpy(spectra.detector_ids),
                    "n_spectra": int(spectra.n_spectra),
                }
            self._open(stream)
            return Start(
                data=data,
                stream=stream,
                seq=0,
                id=_id(ident, stream),
                timestamp=_ns(ident, "start_time", d.start_time),
            )
        if ident == "6s4t":
            stream = d.job_id
            seq = self._next_seq.pop(stream, 1)
            stop = {"schema": ident, **{k: getattr(d, k) for k in _6S4T_FIELDS}}
            return Stop(
                data=stop,
                stream=stream,
                seq=seq,
                id=_id(ident, stream, d.command_id),
                timestamp=_ns(ident, "stop_time", d.stop_time),
            )
        stream = next(reversed(self._next_seq), "")
        seq = self._next_seq.get(stream, 1)
        event = self._event(ident, d, stream, seq)
        if stream in self._next_seq:
            self._next_seq[stream] = seq + 1
        return event

    def _event(self, ident: str, d: Any, stream: str, seq: int) -> Event:
        metadata: dict[str, JSON] = {"schema": ident, "source_name": d.source_name}
        identity: dict[str, Any] = {"stream": stream, "seq": seq}
        if ident == "ad00":
            metadata["unique_id"] = d.unique_id
            metadata["timestamp_ns"] = d.timestamp_ns
            metadata["attributes"] = [
                {
                    "name": a.name,
                    "description": a.description,
                    "source": a.source,
                    "data": _value(a.data),
                }
                for a in d.attributes
            ]
            identity["id"] = _id(ident, d.source_name, d.unique_id, d.timestamp_ns)
            identity["timestamp"] = d.timestamp_ns
            if isinstance(d.data, str):
                metadata["data"] = d.data
                return Event(metadata=metadata, **identity)
            return Event.from_array(_little(d.data), metadata, **identity)
        if ident == "da00":
            metadata["timestamp_ns"] = d.timestamp_ns
            identity["id"] = _id(ident, d.source_name, d.timestamp_ns)
            identity["timestamp"] = d.timestamp_ns
            arrays = [v for v in d.data if isinstance(v.data, np.ndarray)]
            signal = next((v for v in arrays if v.name == "signal"), arrays[0] if arrays else None)
            variables: list[JSON] = []
            for v in d.data:
                entry: dict[str, JSON] = {
                    "name": v.name,
                    "unit": v.unit,
                    "label": v.label,
                    "source": v.source,
                    "axes": list(v.axes),
                    "shape": [int(n) for n in v.shape],
                }
                if v is not signal:
                    entry["data"] = _value(v.data)
                variables.append(entry)
            metadata["variables"] = variables
            if signal is None:
                return Event(metadata=metadata, **identity)
            metadata["signal"] = signal.name
            array = _little(signal.data)
            if array.size == int(np.prod(signal.shape)):
                array = array.reshape(tuple(int(n) for n in signal.shape))
            return Event.from_array(array, metadata, **identity)
        if ident == "ev44":
            metadata["message_id"] = d.message_id
            for name in ("reference_time", "reference_time_index", "time_of_flight", "pixel_id"):
                values = getattr(d, name)
                if not isinstance(values, np.ndarray):  # an absent vector
                    values = np.zeros(0, dtype=_EV44_DTYPES[name])
                metadata[name] = from_numpy(_little(values))
            identity["id"] = _id(ident, d.source_name, d.message_id)
            reference = getattr(d, "reference_time", None)
            if isinstance(reference, np.ndarray) and reference.size:
                identity["timestamp"] = int(reference[0])
            return Event(metadata=metadata, **identity)
        # f144
        metadata["value"] = _value(d.value, arrays=False)
        identity["id"] = _id(ident, d.source_name, d.timestamp_unix_ns)
        if d.timestamp_unix_ns > 0:
            identity["timestamp"] = d.timestamp_unix_ns
        return Event(metadata=metadata, **identity)

    def _open(self, stream: str) -> None:
        self._next_seq[stream] = 1
        self._next_seq.move_to_end(stream)
        if len(self._next_seq) > _LIMIT:
            self._next_seq.popitem(last=False)


def _ns(ident: str, name: str, ms: int) -> int:
    """The timestamp (ns) of the time ``ms`` (a FlatBuffer's uint64 in ms; 0: now).
    Raises DecodeError, naming the field, for a time a timestamp cannot hold."""
    return timestamp_ns(ms, "ms", f"ess: {ident} {name}") if ms > 0 else time.time_ns()


_PL72_FIELDS = (
    "job_id",
    "filename",
    "start_time",
    "stop_time",
    "run_name",
    "nexus_structure",
    "service_id",
    "instrument_name",
    "broker",
    "metadata",
    "control_topic",
)
_6S4T_FIELDS = ("stop_time", "run_name", "job_id", "service_id", "command_id")
_EV44_DTYPES = {
    "reference_time": "<i8",
    "reference_time_index": "<i4",
    "time_of_flight": "<i4",
    "pixel_id": "<i4",
}


def _little(array: Any) -> Any:
    """FlatBuffers are little-endian: say so in the dtype (not 'native')."""
    return array.view(array.dtype.newbyteorder("<")) if array.dtype.itemsize > 1 else array


def _value(value: Any, arrays: bool = True) -> JSON:
    """A deserialized value as JSON-like: numpy scalars as numbers, arrays as array values
    (or lists when ``arrays`` is false)."""
    if isinstance(value, np.ndarray):
        plain: JSON = from_numpy(_little(value)) if arrays else value.tolist()
        return plain
    if isinstance(value, np.generic):
        item: JSON = value.item()
        return item
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return value
    raise DecodeError(f"ess: a {type(value).__name__} value cannot be carried")


def _id(*parts: object) -> str:
    key = ":".join(map(str, parts))
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
