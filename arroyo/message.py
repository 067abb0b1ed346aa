"""The messages of a run (``Start``, ``Event``, ``Stop``) and :class:`Run`, which numbers them.

A run of an instrument is ``Start, Event*, Stop``. Every message carries its identity:
``id`` (unique, for de-duplication under at-least-once delivery), ``stream`` (the run or
scan id: the partition key that keeps a run in order), ``seq`` (its place in the run) and
``timestamp`` (nanoseconds since the Unix epoch, when it was made).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeAlias, TypeVar

from arroyo._optional import require
from arroyo.errors import DecodeError, EncodeError

if TYPE_CHECKING:
    import numpy

JSON: TypeAlias = bool | int | float | str | bytes | list["JSON"] | dict[str, "JSON"] | None
"""A value that Start.data, Stop.data and Event.metadata can hold, and that round-trips exactly."""

Buffer: TypeAlias = bytes | bytearray | memoryview
"""An Event payload: any contiguous byte buffer (a memoryview is sent without copying)."""

Kind = Literal["start", "event", "stop"]

INT64 = (-(2**63), 2**63 - 1)
"""The range of an Avro long, which holds a message's ``seq`` and ``timestamp``."""

_NS_PER = {"ns": 1, "ms": 1_000_000, "s": 1_000_000_000}


def timestamp_ns(value: int | float, unit: Literal["ns", "ms", "s"], where: str) -> int:
    """``value`` (a time since 1970 in ``unit``) as a message ``timestamp`` in ns.

    Raises DecodeError, starting with ``where`` (what the value is and where it came
    from) and the value, when it is not finite or its nanoseconds do not fit in a
    timestamp (a signed 64-bit integer: from the year 1677 to 2262). A parser calls this
    so that such a time is refused when parsed, naming its field, not at publish."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DecodeError(f"{where} {value!r} is not a finite number of {unit}")
        stamp = int(value * _NS_PER[unit])
    else:
        stamp = value * _NS_PER[unit]
    if not INT64[0] <= stamp <= INT64[1]:
        raise DecodeError(
            f"{where} {value!r} {unit} is out of range: its nanoseconds since 1970 must fit "
            "in a signed 64-bit integer (from the year 1677 to 2262)"
        )
    return stamp


def new_id() -> str:
    """Return a fresh 128-bit random message id as 32 hex digits."""
    return os.urandom(16).hex()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Identity:
    stream: str = ""
    seq: int = 0
    id: str = field(default_factory=new_id)
    timestamp: int = field(default_factory=time.time_ns)
    trace: Mapping[str, str] | None = field(default=None, compare=False, repr=False)
    """W3C trace context (``traceparent``, ``tracestate``) that a publisher writes in the
    broker's headers: set by the runtime, only when tracing is on
    (:mod:`arroyo.runtime.tracing`); never part of the Avro record."""


@dataclass(frozen=True, slots=True)
class Start(_Identity):
    """The start of a run; ``data`` describes it (sample, energy, scan plan...)."""

    kind: ClassVar[Kind] = "start"
    data: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Stop(_Identity):
    """The end of a run; ``data`` summarises it (exit status, counts...)."""

    kind: ClassVar[Kind] = "stop"
    data: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ArrayInfo:
    """How to read an Event payload as an array: numpy ``dtype.str`` (with byte order),
    shape, and ``compression``: None when the payload is the raw array, else how it is
    compressed (``bslz4``, ``bszstd`` or ``lz4``, with HDF5 framing, as Dectris detectors
    send them: see :mod:`arroyo.formats.compression`)."""

    dtype: str
    shape: tuple[int, ...]
    compression: str | None = None

    def to_record(self) -> dict[str, Any]:
        """This description as an ``arroyo.Array`` Avro record."""
        return {"dtype": self.dtype, "shape": list(self.shape), "compression": self.compression}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ArrayInfo:
        """The description in an ``arroyo.Array`` record (one written before
        ``compression`` existed has none)."""
        return cls(record["dtype"], tuple(record["shape"]), record.get("compression"))


@dataclass(frozen=True, slots=True)
class Event(_Identity):
    """One datum of a run: ``metadata`` about it and the raw ``payload`` bytes.

    When the payload is an array, ``array`` says its dtype and shape; use
    :meth:`from_array` and :meth:`to_array` rather than filling it in by hand.
    """

    kind: ClassVar[Kind] = "event"
    metadata: dict[str, JSON] = field(default_factory=dict)
    payload: Buffer = b""
    array: ArrayInfo | None = None

    @classmethod
    def from_array(
        cls, array: Any, metadata: dict[str, JSON] | None = None, **identity: Any
    ) -> Event:
        """Make an Event whose payload is the array's raw buffer (not copied if C-contiguous).

        The dtype keeps its byte order (``>u2`` stays big-endian). Object and structured
        dtypes are refused: they have no portable raw form. The array must not be changed
        while the Event is alive, since the payload is a view of its memory.
        """
        np = require("numpy", "numpy", "Event.from_array")
        arr = np.asarray(array)
        if arr.dtype.hasobject or arr.dtype.fields is not None:
            raise EncodeError(f"cannot send an array of dtype {arr.dtype}: only plain dtypes")
        if not arr.flags.c_contiguous:
            arr = arr.copy(order="C")
        payload = memoryview(arr.reshape(-1).view(np.uint8))
        info = ArrayInfo(dtype=arr.dtype.str, shape=tuple(int(n) for n in arr.shape))
        return cls(metadata=metadata or {}, payload=payload, array=info, **identity)

    def to_array(self) -> numpy.ndarray[Any, Any]:
        """Return the payload as a read-only, zero-copy ``numpy.frombuffer`` view.

        A compressed payload (``array.compression`` set) is decompressed first (with
        Dectris' ``dectris-compression``, the ``stream2`` extra), so the array is then a
        view of the decompressed copy. Raises DecodeError when the Event carries no array
        description, when the payload does not decompress, or when its size does not match
        dtype and shape.
        """
        np = require("numpy", "numpy", "Event.to_array")
        if self.array is None:
            raise DecodeError(f"event {self.id} carries no array (its 'array' field is null)")
        try:
            dtype = np.dtype(self.array.dtype)
        except TypeError as exc:
            raise DecodeError(f"event {self.id}: unknown dtype {self.array.dtype!r}") from exc
        if dtype.hasobject:
            raise DecodeError(f"event {self.id}: refusing object dtype {self.array.dtype!r}")
        count = 1
        for n in self.array.shape:
            count *= n
        payload = self.payload
        if self.array.compression is not None:
            from arroyo.formats.compression import decompress

            try:
                payload = decompress(
                    payload, self.array.compression, dtype.itemsize, count * dtype.itemsize
                )
            except DecodeError as exc:
                raise DecodeError(f"event {self.id}: {exc}") from None
        size = payload.nbytes if isinstance(payload, memoryview) else len(payload)
        if count * dtype.itemsize != size or any(n < 0 for n in self.array.shape):
            raise DecodeError(
                f"event {self.id}: payload has {size} bytes "
                f"{'once decompressed ' if self.array.compression else ''}but dtype "
                f"{self.array.dtype} and shape {self.array.shape} need {count * dtype.itemsize}"
            )
        flat = np.frombuffer(payload, dtype=dtype, count=count)
        array: numpy.ndarray[Any, Any] = flat.reshape(self.array.shape)
        return array


Message: TypeAlias = Start | Event | Stop
"""Any of the three messages."""

M = TypeVar("M", Start, Event, Stop)


def assembler(cls: type[M]) -> Callable[..., M]:
    """A maker of ``cls`` from the values of all its fields, in their order (the identity
    first: ``stream, seq, id, timestamp, trace``), that skips the frozen dataclass's
    ``__init__`` and its default factories: about 3x cheaper, for a decoder, whose values
    come already typed by the schema. The result is the same as ``cls(**values)``.

    The maker is generated as dataclasses generate ``__init__``: it sets each slot once.
    """
    names = [f.name for f in fields(cls)]
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    lines = [f"def make({', '.join(names)}):", "    made = _new(_cls)"]
    for i, name in enumerate(names):
        namespace[f"_set{i}"] = getattr(cls, name).__set__  # the slot's own setter
        lines.append(f"    _set{i}(made, {name})")
    lines.append("    return made")
    exec(compile("\n".join(lines), f"<assembler of {cls.__name__}>", "exec"), namespace)
    make: Callable[..., M] = namespace["make"]
    return make


class Run:
    """Makes the messages of one run: same ``stream``, ``seq`` counting up from 0.

    >>> run = Run("scan-42")
    >>> run.start({"sample": "Si"}).seq, run.event({"i": 0}).seq, run.stop().seq
    (0, 1, 2)
    """

    def __init__(self, stream: str | None = None) -> None:
        self.stream = stream if stream is not None else new_id()
        self._seq = 0

    def _next(self) -> int:
        seq, self._seq = self._seq, self._seq + 1
        return seq

    def start(self, data: dict[str, JSON] | None = None) -> Start:
        """The run's Start."""
        return Start(data=data or {}, stream=self.stream, seq=self._next())

    def event(self, metadata: dict[str, JSON] | None = None, payload: Buffer = b"") -> Event:
        """The next Event with a raw payload."""
        return Event(metadata=metadata or {}, payload=payload, stream=self.stream, seq=self._next())

    def array_event(self, array: Any, metadata: dict[str, JSON] | None = None) -> Event:
        """The next Event carrying a numpy array (see :meth:`Event.from_array`)."""
        return Event.from_array(array, metadata, stream=self.stream, seq=self._next())

    def stop(self, data: dict[str, JSON] | None = None) -> Stop:
        """The run's Stop."""
        return Stop(data=data or {}, stream=self.stream, seq=self._next())
