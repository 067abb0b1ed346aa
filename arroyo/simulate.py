"""A simulated detector on a ZeroMQ socket, for demos, tests and benchmarks.

Each run is a Start, ``frames`` frames, a Stop, in one of the formats Arroyo's parsers
read: ``json-frame`` (JSON header + raw frame), ``msgpack-array`` (msgpack header + raw
frame), ``arroyo`` (Arroyo's own framing, one part) or ``stream2`` (a Dectris EIGER2's
SIMPLON stream v2: CBOR ``start``, ``image`` and ``end`` messages, images compressed with
``compression``: see :mod:`arroyo.formats.stream2`). Headers carry ``stream``, ``seq``
(Start 0, frame ``i`` at ``i + 1``), and for frames ``frame``, ``dtype``, ``shape`` and
``timestamp``; stream v2 numbers its images by ``image_id`` (frame ``i`` is image ``i``)
and names the run by ``series_unique_id``.

Faults on purpose (:class:`Faults`): frames dropped, sent twice, or swapped with the
next one, drawn from a seeded generator; the :class:`Simulation` report lists them, so a
test can check that frame accounting (:mod:`arroyo.runtime.frames`) counts them.

``zmq+push://`` sends on a PUSH socket (it waits for a receiver, and blocks when the
receiver falls behind); ``zmq+pub://`` on a PUB socket, after waiting for a first
subscriber (PUB drops what no one subscribed to yet).

Frame contents are deterministic: :func:`frame` gives the array a receiver should see.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

from arroyo._optional import require
from arroyo.brokers import BrokerURL, parse_url
from arroyo.brokers.zmq import SENDING, ZmqSimulatorSettings, open_socket, zmq, zmq_asyncio
from arroyo.codec import Codec, default_codec
from arroyo.errors import ConfigError
from arroyo.message import Event, Start, Stop, new_id
from arroyo.parsers import json_frame

log = logging.getLogger("arroyo.simulate")

FORMATS = ("json-frame", "msgpack-array", "arroyo", "stream2")
COMPRESSIONS = ("bslz4", "lz4", "none")
"""Compressions of ``stream2`` images (``none``: raw)."""


@dataclass(frozen=True)
class Faults:
    """Frames to lose on purpose: each frame is dropped with probability ``drop_rate``;
    each frame sent is swapped with the next one sent with probability ``reorder_rate``
    (pairs do not overlap), and sent twice in a row with probability ``duplicate_rate``.
    ``seed``: the generator's seed (None: a random one)."""

    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    reorder_rate: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("drop_rate", "duplicate_rate", "reorder_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ConfigError(f"{name.replace('_', '-')} must be between 0 and 1, got {rate}")

    @property
    def any(self) -> bool:
        """True when some fault can happen."""
        return bool(self.drop_rate or self.duplicate_rate or self.reorder_rate)

    def order(self, frames: int, rng: random.Random) -> tuple[list[int], RunFaults]:
        """The frame indices to send, in order, and the faults in them."""
        done = RunFaults()
        sent = []
        for index in range(frames):
            if self.drop_rate and rng.random() < self.drop_rate:
                done.dropped.append(index)
            else:
                sent.append(index)
        i = 0
        while i < len(sent) - 1:
            if self.reorder_rate and rng.random() < self.reorder_rate:
                sent[i], sent[i + 1] = sent[i + 1], sent[i]
                done.reordered.append((sent[i + 1], sent[i]))
                i += 2
            else:
                i += 1
        order = []
        for index in sent:
            order.append(index)
            if self.duplicate_rate and rng.random() < self.duplicate_rate:
                order.append(index)
                done.duplicated.append(index)
        return order, done


@dataclass
class RunFaults:
    """The faults of one run: frame indices dropped and duplicated, pairs swapped
    (``(a, b)``: ``b`` was sent before ``a``)."""

    dropped: list[int] = field(default_factory=list)
    duplicated: list[int] = field(default_factory=list)
    reordered: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class Simulation:
    """What a simulation sent (``frames``: frame messages sent, duplicates included)."""

    streams: list[str] = field(default_factory=list)
    messages: int = 0
    frames: int = 0
    frame_bytes: int = 0
    seconds: float = 0.0
    faults: dict[str, RunFaults] = field(default_factory=dict)
    """Per stream, the faults injected."""

    def count(self, fault: str) -> int:
        """How many frames were ``dropped``, ``duplicated`` or ``reordered`` in all."""
        return sum(len(getattr(f, fault)) for f in self.faults.values())


def _base(np: Any, shape: tuple[int, ...], dtype: Any, run: int) -> Any:
    count = math.prod(shape)
    values = (np.arange(count, dtype=np.uint64) * 7 + run * 1009) % 251
    return values.astype(dtype).reshape(shape)


def frame(index: int, shape: tuple[int, ...], dtype: str = "uint16", run: int = 0) -> Any:
    """The array the simulator sends as frame ``index`` of run ``run``: a fixed pattern
    whose first bytes hold the frame index (little-endian), so every frame differs."""
    np = require("numpy", "numpy", "The simulated detector")
    return _stamp(np, _base(np, shape, np.dtype(dtype), run).copy(), index)


def _stamp(np: Any, array: Any, index: int) -> Any:
    raw = array.reshape(-1).view(np.uint8)
    stamp = index.to_bytes(8, "little")[: raw.size]
    raw[: len(stamp)] = np.frombuffer(stamp, dtype=np.uint8)
    return array


async def simulate(
    url: str | BrokerURL,
    *,
    frames: int,
    shape: tuple[int, ...] = (512, 512),
    dtype: str = "uint16",
    rate: float = 0.0,
    format: str = "json-frame",
    runs: int = 1,
    stream: str | None = None,
    options: dict[str, Any] | None = None,
    wait_subscribers: float = 10.0,
    codec: Codec | None = None,
    compression: str | None = None,
    faults: Faults | None = None,
) -> Simulation:
    """Send ``runs`` runs of ``frames`` frames to ``url`` (``zmq+push://`` or ``zmq+pub://``;
    ``*`` or ``?bind=true`` binds). ``rate``: frames per second (0: as fast as the socket
    takes them). ``stream``: the run id (``STREAM-R`` for run R when ``runs`` > 1; default
    a random id). ``options``: socket options ``sndhwm`` (16), ``bind``, ``linger`` (ms
    to wait at the end for the last messages to go out, default 30000; see
    :class:`~arroyo.brokers.zmq.settings.ZmqSimulatorSettings`).
    ``wait_subscribers``: seconds a PUB socket waits for a first subscriber.
    ``compression``: of ``stream2`` images (``bslz4``, the default, ``lz4`` or ``none``;
    other formats send raw frames and refuse one). ``faults``:
    frames to drop, duplicate or reorder on purpose (the report lists them).

    Returns once everything was handed to the socket and sent (or ``linger`` ran out).
    """
    np = require("numpy", "numpy", "The simulated detector")
    parsed = url if isinstance(url, BrokerURL) else parse_url(url)
    if parsed.scheme not in SENDING:
        raise ConfigError(f"{parsed}: the simulator sends on zmq+push:// or zmq+pub://")
    if format not in FORMATS:
        raise ConfigError(f"unknown format {format!r}; known: {', '.join(FORMATS)}")
    if frames < 0 or runs < 1 or rate < 0:
        raise ConfigError("frames must be >= 0, runs >= 1 and rate >= 0")
    if compression is not None and format != "stream2":
        raise ConfigError(f"compression applies to stream2 images, not to {format}")
    compression = compression or "bslz4"
    if compression not in COMPRESSIONS:
        raise ConfigError(f"unknown compression {compression!r}; known: {', '.join(COMPRESSIONS)}")
    if format == "stream2" and len(shape) != 2:
        raise ConfigError(f"stream2 images are two-dimensional, got shape {list(shape)}")
    faults = faults or Faults()
    rng = random.Random(faults.seed)
    try:
        kind = np.dtype(dtype)
    except TypeError as exc:
        raise ConfigError(f"unknown dtype {dtype!r}: {exc}") from None
    if kind.hasobject or kind.fields is not None or kind.kind not in "biufc":
        raise ConfigError(f"dtype {dtype!r}: only plain numeric dtypes can be simulated")
    settings = ZmqSimulatorSettings.from_url(parsed, options)
    encode = _encoder(format, codec or default_codec(), compression)
    context = zmq_asyncio.Context()
    socket_kind = "XPUB" if parsed.scheme == "zmq+pub" else "PUSH"
    socket, endpoint = open_socket(
        context,
        socket_kind,
        parsed,
        settings.bind,
        {zmq.SNDHWM: settings.sndhwm, zmq.LINGER: settings.linger},
    )
    report = Simulation()
    try:
        log.info("simulating on %s (%s)", endpoint, socket_kind)
        if socket_kind == "XPUB":
            await _first_subscriber(socket, wait_subscribers)
        began = time.perf_counter()
        prefix = stream or new_id()[:12]
        sent = 0
        for run in range(runs):
            name = prefix if runs == 1 else f"{prefix}-{run}"
            report.streams.append(name)
            base = _base(np, shape, kind, run)
            start_data = {
                "detector": "arroyo-simulate",
                "frames": frames,
                "dtype": kind.str,
                "shape": list(shape),
            }
            await socket.send_multipart(encode("start", name, 0, start_data, None), copy=False)
            order, report.faults[name] = faults.order(frames, rng)
            for index in order:
                if rate > 0:
                    delay = began + sent / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                array = _stamp(np, base.copy(), index)
                meta = {"frame": index, "timestamp": time.time_ns()}
                parts = encode("event", name, index + 1, meta, array)
                await socket.send_multipart(parts, copy=False)
                sent += 1
                report.frames += 1
                report.frame_bytes += array.nbytes
            stop_data = {"frames": frames, "exit_status": "success"}
            await socket.send_multipart(encode("stop", name, frames + 1, stop_data, None))
            report.messages += len(order) + 2
    finally:
        socket.close()
        await asyncio.to_thread(context.term)  # waits up to linger for queued messages
    report.seconds = time.perf_counter() - began
    return report


async def _first_subscriber(socket: Any, within: float) -> None:
    """Wait until a subscriber's subscription reached the XPUB socket (or ``within`` s)."""
    try:
        async with asyncio.timeout(within):
            await socket.recv()
    except TimeoutError:
        log.warning("no subscriber after %.1f s: sending anyway (PUB drops unsubscribed)", within)


def _encoder(format: str, codec: Codec, compression: str = "none") -> Any:
    """``encode(kind, stream, seq, fields, array) -> parts`` for ``format``."""
    if format == "stream2":
        return _stream2_encoder(compression)
    if format == "arroyo":

        def arroyo(
            kind: str, stream: str, seq: int, fields: dict[str, Any], array: Any
        ) -> list[Any]:
            identity: dict[str, Any] = {"stream": stream, "seq": seq}
            if kind == "event":
                identity["timestamp"] = fields.pop("timestamp")
                return [codec.encode(Event.from_array(array, fields, **identity))]
            cls = Start if kind == "start" else Stop
            return [codec.encode(cls(data=fields, **identity))]

        return arroyo
    if format == "msgpack-array":
        from arroyo.parsers import msgpack_array

        header = msgpack_array.encode_header
    else:
        header = json_frame.encode_header

    def framed(kind: str, stream: str, seq: int, fields: dict[str, Any], array: Any) -> list[Any]:
        head = {"type": kind, "stream": stream, "seq": seq, **fields}
        if array is None:
            return [header(head)]
        head["dtype"], head["shape"] = array.dtype.str, list(array.shape)
        return [header(head), memoryview(array.reshape(-1).view("u1"))]

    return framed


_FRAME_TIME_NS = 1_000_000
"""The simulated EIGER2's frame time (its start message says ``frame_time: 0.001``)."""


def _stream2_encoder(compression: str) -> Any:
    """Stream v2 messages: series ids count from 1, ``series_unique_id`` is the stream,
    image ``i`` is frame ``i`` (``tables``, a flatfield and a pixel mask, are sent when
    the images are compressed: raw, they would not fit a Kafka message)."""
    from arroyo.formats import stream2

    packing = None if compression == "none" else compression
    series = {"id": 0}

    def encode(kind: str, stream: str, seq: int, fields: dict[str, Any], array: Any) -> list[Any]:
        if kind == "start":
            series["id"] += 1
            message = stream2.start_message(
                series_id=series["id"],
                series_unique_id=stream,
                number_of_images=fields["frames"],
                image_shape=tuple(fields["shape"]),
                image_dtype=fields["dtype"],
                compression=packing,
                tables=packing is not None,
            )
        elif kind == "event":
            index = fields["frame"]
            message = stream2.image_message(
                series_id=series["id"],
                series_unique_id=stream,
                image_id=index,
                data={"threshold_1": array},
                compression=packing,
                start_ns=index * _FRAME_TIME_NS,  # since the series started
                stop_ns=(index + 1) * _FRAME_TIME_NS,
            )
        else:
            message = stream2.end_message(series_id=series["id"], series_unique_id=stream)
        return [message]

    return encode
