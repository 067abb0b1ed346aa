"""``bluesky``: documents from bluesky's 0MQ publisher, as Arroyo messages.

bluesky's ``bluesky.callbacks.zmq.Publisher`` (subscribed to a RunEngine) sends each
document as ONE ZeroMQ frame, ``PREFIX b" " NAME b" " SERIALIZED_DOCUMENT``, on a PUB
socket connected to a ``bluesky.callbacks.zmq.Proxy`` (``bluesky-0MQ-proxy``), whose
PUB side the bridge subscribes to: ``zmq+sub://PROXY_HOST:OUT_PORT?parser=bluesky``.
``PREFIX`` is the Publisher's ``prefix`` (empty by default), ``NAME`` the document name.

How documents become messages (``stream`` is always the run's start uid):

- ``start`` -> :class:`~arroyo.message.Start` with the start document as ``data``;
- ``stop`` -> :class:`~arroyo.message.Stop` with the stop document as ``data``;
- ``event`` -> one :class:`~arroyo.message.Event` whose ``metadata`` is the event
  document plus ``"document": "event"`` (``metadata["data"]["det"]`` is a reading);
- ``event_page`` -> one such Event per event in the page (``bulk_events`` likewise);
- ``descriptor``, ``resource``, ``datum``, ``stream_resource``, ``stream_datum`` -> an
  Event whose ``metadata`` is the document plus ``"document": NAME``; ``datum_page``
  (and ``bulk_datum``) are expanded into one ``datum`` Event per datum. Nothing is
  dropped. Events carry no payload.

``seq`` counts the messages of a run as the parser sees them (Start is 0); ``id`` is
the document's uid (as 32 hex digits), so a document bridged twice has the same id;
``timestamp`` is the document's ``time``. Events and descriptors find their run through
the descriptor (``run_start``), datums through their resource; a document of a run
whose start the parser has not seen goes to the most recent open run (or stream "").

bluesky's event ``seq_num`` counts per descriptor, so a gap there means documents were
lost on the way (PUB/SUB drops when a subscriber falls behind): the parser logs a
warning and adds the count to :attr:`BlueskyParser.missing` (the ZeroMQ listener
reports it as ``arroyo_zmq_gaps``).

Options (``parser_options:``):

``serializer``
    ``auto`` (default: msgpack, JSON or pickle, told apart by the first bytes),
    ``msgpack`` (``Publisher(..., serializer=msgpack.dumps)``; numpy values packed by
    ``msgpack_numpy`` are read too), ``json``, or ``pickle`` (bluesky's default).
``allow_pickle``
    Pickled documents are refused (DecodeError, so a dead letter) unless this is true:
    unpickling input from the network runs whatever code the sender put in it. Turn it
    on only for a trusted network, or better, make the Publisher use msgpack.
``prefix``
    Only documents with this Publisher prefix are taken; others are acknowledged and
    left out (as bluesky's RemoteDispatcher does). To filter on the socket instead,
    subscribe to ``?topic=PREFIX%20`` on the URL.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from arroyo.errors import ConfigError, DecodeError
from arroyo.message import JSON, Event, Message, Start, Stop
from arroyo.parsers._bluesky_documents import check, document_id, expand, nanoseconds, plain
from arroyo.parsers._frames import size_of

if TYPE_CHECKING:
    from arroyo.runtime.listener import Raw

log = logging.getLogger("arroyo.parsers.bluesky")

DOCUMENTS = frozenset(
    {
        "start",
        "stop",
        "descriptor",
        "event",
        "event_page",
        "resource",
        "datum",
        "datum_page",
        "stream_resource",
        "stream_datum",
        "bulk_events",
        "bulk_datum",
    }
)
"""The document names bluesky sends (event_model.DocumentNames)."""

_UID_KEY = {"datum": "datum_id"}
_LIMIT = 10_000
"""How many descriptors, resources and runs the parser remembers (oldest forgotten)."""

Serializer = Literal["auto", "msgpack", "json", "pickle"]


class BlueskyCounter:
    """Frame accounting of bluesky runs (:mod:`arroyo.runtime.frames`): the events'
    ``seq_num``, per descriptor (a lane per descriptor uid), from 1 to the stop
    document's ``num_events`` of the descriptor's stream name. The stop document is the
    RunEngine's and goes on as it came (bluesky-kafka readers get document for
    document): the summary is in the metrics and the log only."""

    summary_in_stop = False

    def __init__(self) -> None:
        self._names: OrderedDict[str, str] = OrderedDict()  # descriptor uid -> stream name

    def lanes(self, start: Start) -> Iterable[str]:
        """None known at the start: descriptors come later."""
        return ()

    def number(self, event: Event) -> tuple[str, int] | None:
        """``(descriptor, seq_num)`` of an event document (descriptors are remembered)."""
        metadata = event.metadata
        document = metadata.get("document")
        if document == "descriptor":
            uid, name = metadata.get("uid"), metadata.get("name")
            if isinstance(uid, str) and isinstance(name, str):
                _remember(self._names, uid, name)
            return None
        if document == "event":
            descriptor, seq_num = metadata.get("descriptor"), metadata.get("seq_num")
            if isinstance(descriptor, str) and isinstance(seq_num, int):
                return descriptor, seq_num
        return None

    def first(self, start: Start | None, lane: str) -> int | None:
        """1 (after a start document)."""
        return 1 if start is not None else None

    def last(self, start: Start | None, stop: Stop, lane: str) -> int | None:
        """The stop document's ``num_events`` of the descriptor's stream."""
        counts, name = stop.data.get("num_events"), self._names.get(lane)
        count = counts.get(name) if isinstance(counts, dict) and name is not None else None
        return count if isinstance(count, int) and not isinstance(count, bool) else None


class BlueskyParser:
    """Parses bluesky 0MQ documents (see the module documentation)."""

    frame_counter = BlueskyCounter

    def __init__(
        self,
        serializer: Serializer = "auto",
        allow_pickle: bool = False,
        prefix: str | None = None,
    ) -> None:
        if serializer not in ("auto", "msgpack", "json", "pickle"):
            raise ConfigError(
                f"bluesky parser: serializer must be auto, msgpack, json or pickle, "
                f"got {serializer!r}"
            )
        if serializer == "pickle" and not allow_pickle:
            raise ConfigError(
                "bluesky parser: serializer 'pickle' needs allow_pickle: true (unpickling "
                "network input runs arbitrary code; prefer serializer=msgpack.dumps in the "
                "bluesky Publisher)"
            )
        if prefix is not None and " " in prefix:
            raise ConfigError(f"bluesky parser: prefix {prefix!r} may not contain a space")
        self.serializer = serializer
        self.allow_pickle = bool(allow_pickle)
        self.prefix = None if prefix is None else prefix.encode()
        self.missing = 0
        """Events known to be lost: gaps in ``seq_num`` per descriptor."""
        self._next_seq: OrderedDict[str, int] = OrderedDict()  # open runs -> next seq
        self._descriptors: OrderedDict[str, str] = OrderedDict()  # descriptor uid -> run
        self._resources: OrderedDict[str, str] = OrderedDict()  # (stream_)resource -> run
        self._seq_num: OrderedDict[str, int] = OrderedDict()  # descriptor -> last seq_num

    # -- reading the wire --------------------------------------------------------------

    def parse(self, data: Raw) -> list[Message]:
        """The messages of one bluesky 0MQ message (several for a page; none when its
        prefix is not ours). DecodeError when it is not a bluesky document."""
        if isinstance(data, list):
            if len(data) != 1:
                raise DecodeError(
                    f"bluesky: expected 1 part (PREFIX NAME DOCUMENT), received {len(data)} parts"
                )
            data = data[0]
        raw = bytes(data)
        try:
            prefix, name_bytes, payload = raw.split(b" ", 2)
        except ValueError:
            raise DecodeError(
                f"bluesky: expected b'PREFIX NAME DOCUMENT' ({size_of(data)} bytes without two "
                f"spaces): {raw[:60]!r}"
            ) from None
        if self.prefix is not None and prefix != self.prefix:
            return []
        name = name_bytes.decode("utf-8", "replace")
        if name not in DOCUMENTS:
            raise DecodeError(f"bluesky: unknown document name {name!r} (prefix {prefix!r})")
        return self._documents(name, self._deserialize(name, payload))

    def _documents(self, name: str, value: Any) -> list[Message]:
        """The messages of document ``name`` as deserialized (several for a page)."""
        doc = plain(value, name)
        if not isinstance(doc, dict):
            raise DecodeError(f"bluesky: the {name} document is a {type(doc).__name__}, not a map")
        docs = expand(name, doc)
        for item_name, item in docs:
            check(item_name, item)
        return [self._message(item_name, item) for item_name, item in docs]

    def _deserialize(self, name: str, payload: bytes) -> Any:
        kind = self.serializer if self.serializer != "auto" else _sniff(payload)
        if kind == "pickle":
            if not self.allow_pickle:
                raise DecodeError(
                    f"bluesky: the {name} document is pickled, and pickle is refused "
                    "(unpickling network input runs arbitrary code). Make the Publisher use "
                    "serializer=msgpack.dumps, or set parser_options: {allow_pickle: true}"
                )
            try:
                return pickle.loads(payload)  # allowed explicitly by the config
            except Exception as exc:
                raise DecodeError(f"bluesky: cannot unpickle the {name} document: {exc}") from None
        if kind == "json":
            try:
                return json.loads(payload)
            except ValueError as exc:
                raise DecodeError(f"bluesky: the {name} document is not JSON: {exc}") from None
        from arroyo._optional import require

        msgpack = require("msgpack", "zmq", "The bluesky parser")
        try:
            return msgpack.unpackb(payload, raw=False, strict_map_key=False, timestamp=2)
        except Exception as exc:
            raise DecodeError(
                f"bluesky: the {name} document is not msgpack ({type(exc).__name__}"
                + (f": {exc})" if str(exc) else ")")
            ) from None

    # -- documents to messages ---------------------------------------------------------

    def _message(self, name: str, doc: dict[str, JSON]) -> Message:
        stream = self._run_of(name, doc)
        identity: dict[str, Any] = {
            "stream": stream,
            "id": document_id(name, doc.get(_UID_KEY.get(name, "uid"))),
            "timestamp": nanoseconds(doc.get("time")),
        }
        if name == "start":
            identity["seq"] = 0
            _remember(self._next_seq, stream, 1)
            return Start(data=doc, **identity)
        identity["seq"] = self._next_seq.get(stream, 1)
        if name == "stop":
            self._forget(stream)
            return Stop(data=doc, **identity)
        _remember(self._next_seq, stream, identity["seq"] + 1)
        if name == "descriptor":
            _remember(self._descriptors, str(doc["uid"]), stream)
        elif name in ("resource", "stream_resource"):
            _remember(self._resources, str(doc["uid"]), stream)
        elif name == "event":
            self._check_gap(doc)
        return Event(metadata={"document": name, **doc}, **identity)

    def _run_of(self, name: str, doc: dict[str, JSON]) -> str:
        if name == "start":
            return str(doc["uid"])
        run = doc.get("run_start")
        if isinstance(run, str):
            return run
        for key, table in (
            ("descriptor", self._descriptors),
            ("resource", self._resources),
            ("stream_resource", self._resources),
        ):
            found = table.get(str(doc.get(key)))
            if found is not None:
                return found
        return next(reversed(self._next_seq), "")

    def _check_gap(self, doc: dict[str, JSON]) -> None:
        descriptor, seq_num = str(doc.get("descriptor")), doc.get("seq_num")
        if not isinstance(seq_num, int):
            return
        last = self._seq_num.get(descriptor)
        if last is not None and seq_num > last + 1:
            lost = seq_num - last - 1
            self.missing += lost
            log.warning(
                "bluesky: %d event(s) of descriptor %s lost (seq_num %d follows %d)",
                lost,
                descriptor,
                seq_num,
                last,
            )
        if last is None or seq_num > last:
            _remember(self._seq_num, descriptor, seq_num)

    def _forget(self, run: str) -> None:
        self._next_seq.pop(run, None)
        descriptors = [d for d, r in self._descriptors.items() if r == run]
        for d in descriptors:
            del self._descriptors[d]
            self._seq_num.pop(d, None)
        for r in [r for r, owner in self._resources.items() if owner == run]:
            del self._resources[r]


def _remember(table: OrderedDict[str, Any], key: str, value: Any) -> None:
    table[key] = value
    table.move_to_end(key)
    if len(table) > _LIMIT:
        table.popitem(last=False)


def _sniff(payload: bytes) -> str:
    """msgpack, json or pickle, from the first bytes of a serialized document (pickle
    protocols 2 to 5 only; older pickles are read as msgpack, and fail)."""
    first = payload[:1]
    if first == b"\x80" and len(payload) > 1 and 2 <= payload[1] <= 5:
        return "pickle"  # PROTO opcode (protocol 2 to 5); msgpack's empty map is b"\x80" alone
    if first and (0x80 <= first[0] <= 0x8F or first[0] in (0xDE, 0xDF)):
        return "msgpack"
    if payload.lstrip()[:1] == b"{":
        return "json"
    return "msgpack"  # not a map in any of them: msgpack says what it is
