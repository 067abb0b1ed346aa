"""ZeroMQ: ``zmq+pull://`` and ``zmq+sub://`` listeners, ``zmq+push://`` and ``zmq+pub://``
publishers (pyzmq, asyncio; ``pip install 'arroyo-streams[zmq]'``).

``zmq+pull://HOST:PORT`` connects to a sender that binds (a detector); ``zmq+pull://*:PORT``
binds on every interface, and ``?bind=true`` binds on HOST only (``127.0.0.1``). A
bound port 0 takes a free port (``endpoint`` tells which, once ``ready`` is set).
ZeroMQ reconnects by itself; a connecting socket needs no peer at start.

**No acknowledgements.** ZeroMQ has none: :meth:`ZmqListener.ack` does nothing, and a
message is gone once received. What the bridge received but had not finished when it
stops or crashes, and what still sits in its socket queue (up to ``rcvhwm`` messages),
is lost; no one redelivers it. A publisher's confirmation only means the message was
handed to the socket: ZeroMQ tells nothing about delivery.

**PUSH/PULL** is lossless while both ends live and gives backpressure: the listener
takes messages only when the Block has room (what its socket already holds, up to 64
messages or 1 MiB, is read and handed over together), its socket queue holds at most
``rcvhwm`` messages, then TCP buffers fill and the sender's ``send`` blocks at its
``sndhwm``. **PUB/SUB drops by design**: a subscriber that falls behind, or joins late,
misses messages, and nothing tells it. The listener counts what it can detect, gaps in
``seq`` per stream (the sender's numbers: ``arroyo`` framing, ``json-frame`` headers with
``seq``; and seq_num gaps that a parser counts in its ``missing`` attribute, as the
bluesky parser does), in the Prometheus counter ``arroyo_zmq_gaps{block}`` with a log
warning. A dead-lettered message leaves a gap too. A lost Stop leaves no gap (nothing of
its run follows it), so a run that ends without its Stop is counted in
``arroyo_zmq_runs_without_stop{block}``, with a warning: when its stream starts again
with a new Start, or when nothing of it came for ``run_timeout`` seconds (then the Stop
was lost or the sender stopped sending). Runs still open when the listener stops are
logged, not counted.

**Messages**: ``Received.data`` is the single frame (bytes) of a one-part message, or
the list of frames of a multipart one, and the parser gets exactly that. Frames of at
least ``copy_threshold`` bytes are handed over without a copy, as read-only
``memoryview``\\ s of ZeroMQ's buffers, and become Event payloads as they are; the
codec then copies a payload once into the encoded message. Smaller frames are bytes.
The publishers send Arroyo's own framing, one frame per message, for another Arroyo
process to read with the ``arroyo`` parser (``zmq+pull://...?parser=arroyo``, the
default). Large messages are sent zero-copy. With tracing on
(:mod:`arroyo.runtime.tracing`) a second, last frame carries the W3C trace context
(``arroyo-trace`` and a ``traceparent=...`` line, ``tracestate=...`` when there is one);
a listener takes such a last frame off before parsing (tracing on or not) and, with
tracing on, continues its trace.

Options (URL query or YAML), declared in :mod:`arroyo.brokers.zmq.settings`:

- listeners: ``rcvhwm`` (16), ``topic`` (SUB only: prefix filters on the first frame, a
  list in YAML; default everything), ``bind`` (false), ``copy_threshold`` (65536 bytes),
  ``run_timeout`` (60 s);
- publishers: ``sndhwm`` (16), ``bind`` (false), ``linger`` (5000 ms that close() waits
  for queued messages to go out; -1 forever);
- ``arroyo tail`` (``zmq+sub://`` only): ``topic``, ``bind``, ``rcvhwm`` (1000).

The package: ``settings.py`` (the options), ``connection.py`` (addresses, bind or
connect, the probe), ``listener.py``, ``gaps.py`` (what a listener can tell it lost),
``publisher.py``, ``browse.py`` (``arroyo tail``). Logger: ``arroyo.brokers.zmq``.
"""

from __future__ import annotations

from arroyo._optional import require
from arroyo.brokers.connector import Connector

_PURPOSE = "The ZeroMQ connector (zmq+*:// URLs)"
zmq = require("zmq", "zmq", _PURPOSE)
zmq_asyncio = require("zmq.asyncio", "zmq", _PURPOSE)

from arroyo.brokers.zmq.browse import ZmqSubBrowser, browser  # noqa: E402
from arroyo.brokers.zmq.connection import (  # noqa: E402
    RECEIVING,
    SENDING,
    address,
    open_socket,
    probe,
)
from arroyo.brokers.zmq.gaps import GAPS, RUNS_WITHOUT_STOP, SeqGaps  # noqa: E402
from arroyo.brokers.zmq.listener import ZmqListener, listener  # noqa: E402
from arroyo.brokers.zmq.publisher import ZmqPublisher, publisher  # noqa: E402
from arroyo.brokers.zmq.settings import (  # noqa: E402
    ZmqBrowserSettings,
    ZmqListenerSettings,
    ZmqPublisherSettings,
    ZmqSimulatorSettings,
)

__all__ = [
    "CONNECTOR",
    "GAPS",
    "RECEIVING",
    "RUNS_WITHOUT_STOP",
    "SENDING",
    "SeqGaps",
    "ZmqBrowserSettings",
    "ZmqListener",
    "ZmqListenerSettings",
    "ZmqPublisher",
    "ZmqPublisherSettings",
    "ZmqSimulatorSettings",
    "ZmqSubBrowser",
    "address",
    "browser",
    "listener",
    "open_socket",
    "probe",
    "publisher",
    "zmq",
    "zmq_asyncio",
]

CONNECTOR = Connector(
    name="zmq",
    schemes=("zmq+pub", "zmq+sub", "zmq+push", "zmq+pull"),
    extra="zmq",
    listener=listener,
    publisher=publisher,
    browser=browser,
    probe=probe,
    acknowledges=False,
    notes={"zmq+sub": "at-most-once: PUB/SUB drops by design"},
)
