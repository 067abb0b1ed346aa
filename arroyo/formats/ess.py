"""``format: ess``: Arroyo messages as ESS FlatBuffers, for an ESS-style file-writer.

Written with the ``ess-streaming-data-types`` package (the ``ess`` extra):

- a Start -> ``pl72`` (run start): ``job_id`` the stream, ``start_time`` the Start's
  timestamp (ms), ``filename`` (default ``STREAM.nxs``), ``run_name`` (default the
  stream), ``nexus_structure``, ``service_id``, ``instrument_name``, ``broker`` and
  ``control_topic`` from the Start's data when it has them (else the format's options),
  and the rest of the data as the JSON ``metadata`` string (a Start the ``ess`` parser
  made keeps its own ``metadata``, ``stop_time`` and ``detector_spectrum_map``);
- a Stop -> ``6s4t`` (run stop): ``job_id`` the stream, ``stop_time`` its timestamp;
- an Event with an array -> ``ad00``: the array (decompressed, little-endian; integer,
  float32 or float64), ``source_name`` (metadata ``source_name``, else the format's),
  ``unique_id`` (metadata ``unique_id``, else the Event's ``seq``), ``timestamp_ns``
  (metadata ``timestamp_ns``, else the Event's timestamp);
- an Event without an array -> ``f144`` log values: its ``value`` under its
  ``source_name`` when it has both (as the ``ess`` parser makes them), else one ``f144``
  per number (or list of numbers) in its metadata, named by its key. Other values
  (strings, maps) have no ``f144`` form and are not sent.

Events the ``ess`` parser made from ``ev44`` and ``da00`` (metadata ``schema``) are
written back as such, so ESS data bridged through Arroyo arrives as it left. Records have
no key of their own (the publisher's default: the stream). A value that does not fit
(an unsupported dtype, a value out of range) raises EncodeError.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from arroyo._optional import require
from arroyo.errors import EncodeError
from arroyo.formats import Record
from arroyo.formats.arrays import is_array_value, to_array
from arroyo.message import Event, Message, Start, Stop

sdt = require("streaming_data_types", "ess", "The ess format")
np = require("numpy", "ess", "The ess format")

_AD00_KINDS = frozenset({"u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f4", "f8"})
_RUN_START_KEYS = (
    "filename",
    "run_name",
    "nexus_structure",
    "service_id",
    "instrument_name",
    "broker",
    "control_topic",
)


class EssFormat:
    """Writes ESS FlatBuffers (see the module documentation). Options: defaults for
    what a message does not say itself."""

    def __init__(
        self,
        source_name: str = "arroyo",
        nexus_structure: str = "{}",
        service_id: str = "",
        instrument_name: str = "",
        broker: str = "",
        control_topic: str = "",
    ) -> None:
        self.defaults = {
            "nexus_structure": nexus_structure,
            "service_id": service_id,
            "instrument_name": instrument_name,
            "broker": broker,
            "control_topic": control_topic,
        }
        self.source_name = source_name

    def encode(self, message: Message) -> list[Record]:
        """The FlatBuffers of ``message`` (see the module documentation)."""
        try:
            values = self._encode(message)
        except EncodeError:
            raise
        except (ValueError, TypeError, OverflowError, NotImplementedError, KeyError) as exc:
            raise EncodeError(f"ess: cannot write {message.kind} {message.id}: {exc}") from None
        return [Record(value) for value in values]

    def _encode(self, message: Message) -> list[bytes]:
        if isinstance(message, Start):
            return [self._run_start(message)]
        if isinstance(message, Stop):
            data = message.data
            return [
                sdt.serialise_6s4t(
                    job_id=message.stream,
                    run_name=_text(data.get("run_name"), message.stream),
                    service_id=_text(data.get("service_id"), self.defaults["service_id"]),
                    command_id=_text(data.get("command_id"), ""),
                    stop_time=message.timestamp // 1_000_000,
                )
            ]
        metadata = message.metadata
        schema = metadata.get("schema")
        source = _text(metadata.get("source_name"), self.source_name)
        if schema == "ev44":
            return [self._ev44(message, source)]
        if message.array is not None:
            if schema == "da00":
                return [self._da00(message, source)]
            return [self._ad00(message, source)]
        if "value" in metadata and isinstance(metadata.get("source_name"), str):
            return [sdt.serialise_f144(source, _log_value(metadata["value"]), message.timestamp)]
        return [
            sdt.serialise_f144(key, _log_value(value), message.timestamp)
            for key, value in metadata.items()
            if _is_number(value)
            or (isinstance(value, list) and value and all(map(_is_number, value)))
        ]

    def _run_start(self, start: Start) -> bytes:
        data = dict(start.data)
        fields = {key: data.pop(key, None) for key in _RUN_START_KEYS}
        from_ess = data.get("schema") == "pl72"
        metadata = data.pop("metadata", None) if from_ess else None
        stop_time = data.pop("stop_time", None) if from_ess else None
        spectra = data.pop("detector_spectrum_map", None) if from_ess else None
        for key in ("schema", "job_id", "start_time"):
            data.pop(key, None)
        spectrum_map = None
        if isinstance(spectra, dict):
            spectrum_map = sdt.run_start_pl72.DetectorSpectrumMap(
                to_array(spectra.get("spectrum_numbers"), "detector_spectrum_map"),
                to_array(spectra.get("detector_ids"), "detector_spectrum_map"),
                int(spectra.get("n_spectra", 0)),  # type: ignore[arg-type]
            )
        return bytes(
            sdt.serialise_pl72(
                job_id=start.stream,
                filename=_text(fields["filename"], f"{start.stream}.nxs"),
                start_time=start.timestamp // 1_000_000,
                stop_time=stop_time if isinstance(stop_time, int) and stop_time > 0 else None,
                run_name=_text(fields["run_name"], start.stream),
                nexus_structure=_text(fields["nexus_structure"], self.defaults["nexus_structure"]),
                service_id=_text(fields["service_id"], self.defaults["service_id"]),
                instrument_name=_text(fields["instrument_name"], self.defaults["instrument_name"]),
                broker=_text(fields["broker"], self.defaults["broker"]),
                metadata=metadata if isinstance(metadata, str) else _json(data),
                control_topic=_text(fields["control_topic"], self.defaults["control_topic"]),
                detector_spectrum_map=spectrum_map,
            )
        )

    def _ad00(self, event: Event, source: str) -> bytes:
        array = _native(event.to_array(), "ad00")
        metadata = event.metadata
        unique_id = metadata.get("unique_id", event.seq)
        stamp = metadata.get("timestamp_ns", event.timestamp)
        attributes = []
        if metadata.get("schema") == "ad00" and isinstance(metadata.get("attributes"), list):
            for a in metadata["attributes"]:  # type: ignore[union-attr]
                if isinstance(a, dict):
                    value = a.get("data")
                    attributes.append(
                        sdt.area_detector_ad00.Attribute(
                            str(a.get("name", "")),
                            str(a.get("description", "")),
                            str(a.get("source", "")),
                            to_array(value) if is_array_value(value) else value,
                        )
                    )
        return bytes(sdt.serialise_ad00(source, int(unique_id), int(stamp), array, attributes))  # type: ignore[arg-type]

    def _da00(self, event: Event, source: str) -> bytes:
        variables = []
        signal = event.metadata.get("signal")
        for v in event.metadata.get("variables") or []:  # type: ignore[union-attr]
            if not isinstance(v, dict):
                continue
            if v.get("name") == signal:
                data: Any = _native(event.to_array(), "da00")
            else:
                value = v.get("data")
                data = to_array(value) if is_array_value(value) else value
            variables.append(
                sdt.dataarray_da00.Variable(
                    name=str(v.get("name")),
                    data=data,
                    axes=list(v.get("axes") or []),  # type: ignore[arg-type]
                    shape=tuple(v.get("shape") or ()),  # type: ignore[arg-type]
                    unit=v.get("unit"),
                    label=v.get("label"),
                    source=v.get("source"),
                )
            )
        stamp = event.metadata.get("timestamp_ns", event.timestamp)
        return bytes(sdt.serialise_da00(source, int(stamp), variables))  # type: ignore[arg-type]

    def _ev44(self, event: Event, source: str) -> bytes:
        arrays = {}
        for name in ("reference_time", "reference_time_index", "time_of_flight", "pixel_id"):
            value = event.metadata.get(name)
            arrays[name] = to_array(value, f"ev44 {name}") if value is not None else []
        message_id = event.metadata.get("message_id", event.seq)
        return bytes(sdt.serialise_ev44(source, int(message_id), **arrays))  # type: ignore[arg-type]


def _native(array: Any, schema: str) -> Any:
    """``array`` in native byte order, C-contiguous (the package writes it little-endian);
    EncodeError for a dtype ``schema`` lacks."""
    code = array.dtype.kind + str(array.dtype.itemsize)
    if code not in _AD00_KINDS:
        raise EncodeError(f"ess: {schema} cannot carry arrays of dtype {array.dtype}")
    return np.ascontiguousarray(array.astype(array.dtype.newbyteorder("="), copy=False))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _log_value(value: Any) -> Any:
    if _is_number(value):
        return value
    if isinstance(value, list) and value and all(map(_is_number, value)):
        return np.asarray(value)
    if is_array_value(value):
        return to_array(value)
    raise EncodeError(f"ess: f144 carries numbers or lists of numbers, not {value!r:.60}")


def _text(value: object, default: str) -> str:
    return value if isinstance(value, str) else default


def _json(data: dict[str, Any]) -> str:
    def default(value: Any) -> Any:
        if isinstance(value, bytes):
            return {"base64": base64.b64encode(value).decode()}
        raise TypeError(f"{type(value).__name__} is not JSON")

    return json.dumps(data, default=default, separators=(",", ":"))
