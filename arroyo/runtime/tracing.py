"""OpenTelemetry tracing of a Block's messages (the optional extra ``otel``).

Off by default. :func:`enable` (``arroyo run --tracing``, or ``tracing: true`` at the top
of a pipeline's YAML) turns it on for the process; from then on each received message
gets three kinds of spans, named after the OpenTelemetry messaging conventions:

- ``receive`` (kind CONSUMER): from the moment the listener handed the message over to
  the moment the Block took it; the child of the W3C trace context that came with the
  message (``traceparent``/``tracestate``), or a new root when none came;
- ``process`` (kind INTERNAL), child of ``receive``: parsing and the operator (spans the
  operator makes itself are its children);
- ``publish`` (kind PRODUCER), child of ``process``: one per output and publisher, from
  the send to the broker's confirmation. Its context goes out with the message, in the
  broker's headers, so the next Block's ``receive`` is its child: one trace end to end.

Attributes: ``arroyo.block``, ``messaging.system`` (kafka, redis, rabbitmq, zeromq...),
``arroyo.stream`` (the run id), ``messaging.destination.name`` (where the message was
read from, or written to), ``messaging.message.id``.

The header format is OpenTelemetry's own (the global propagator, W3C trace context by
default). What each connector does is map headers in and out: a listener sets
:attr:`Received.trace` from the headers it received when :data:`on` is true (with
:func:`carrier`); a publisher adds :attr:`Message.trace <arroyo.message.Start.trace>`
to the headers it writes when it is set (it is set only when tracing is on).

Tracing off costs one boolean check per message in each place: nothing else of this
module runs, and opentelemetry is not even imported.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from arroyo._optional import require

if TYPE_CHECKING:
    from arroyo.message import Message
    from arroyo.runtime.received import Received

on: bool = False
"""Whether tracing is on in this process (read on the hot path: a plain module global)."""

HEADERS = ("traceparent", "tracestate")
"""The headers of W3C trace context, as the default propagator writes them."""

_B_HEADERS = {name.encode(): name for name in HEADERS}

ZMQ_FRAME = b"arroyo-trace\n"
"""How the extra last frame of an Arroyo-framed ZeroMQ message that carries trace
context begins (it goes on with ``name=value`` lines); see :func:`zmq_frame`."""

_tracer: Any = None


def enable(provider: Any = None) -> None:
    """Turn tracing on for this process. ``provider`` (an SDK ``TracerProvider``) is used
    when given (tests); otherwise the global one, and when none was set (the API's
    default does nothing), an SDK provider configured by the standard ``OTEL_*``
    environment variables: ``OTEL_SERVICE_NAME`` (default ``arroyo``) and
    ``OTEL_TRACES_EXPORTER`` (``otlp``, the default, to ``OTEL_EXPORTER_OTLP_ENDPOINT``
    over HTTP; ``console``; ``none``; several separated by commas), and
    ``OTEL_PROPAGATORS`` (the header format; W3C trace context by default).
    ``OTEL_SDK_DISABLED=true`` leaves tracing off.

    Raises MissingDependencyError (one line naming the extra ``otel``) when the
    opentelemetry packages are not installed.
    """
    global on, _tracer
    trace = require("opentelemetry.trace", "otel", "Tracing")
    require("opentelemetry.sdk.trace", "otel", "Tracing")
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return
    if provider is None:
        provider = trace.get_tracer_provider()
        if not hasattr(provider, "add_span_processor"):  # the API's default: no SDK yet
            provider = _sdk_provider()
            trace.set_tracer_provider(provider)
    from arroyo import __version__

    _tracer = provider.get_tracer("arroyo", __version__)
    on = True


def disable() -> None:
    """Turn tracing off again (tests)."""
    global on, _tracer
    on = False
    _tracer = None


def _sdk_provider() -> Any:
    """An SDK TracerProvider exporting as the ``OTEL_*`` environment variables say."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    name = os.environ.get("OTEL_SERVICE_NAME", "arroyo")
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    exporters = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    for exporter in filter(None, (e.strip() for e in exporters.split(","))):
        if exporter == "none":
            continue
        if exporter == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif exporter == "otlp":
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )
            except ImportError:
                from arroyo.errors import MissingDependencyError

                raise MissingDependencyError(
                    "OTEL_TRACES_EXPORTER=otlp needs the Python package "
                    "'opentelemetry-exporter-otlp-proto-http', which is not installed. "
                    "Install it with: pip install 'arroyo-streams[otel]' (or set "
                    "OTEL_TRACES_EXPORTER=console)"
                ) from None
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            from arroyo.errors import ConfigError

            raise ConfigError(
                f"OTEL_TRACES_EXPORTER={exporters!r}: unknown exporter {exporter!r}; "
                "Arroyo knows otlp, console and none"
            )
    return provider


# -- what connectors call ----------------------------------------------------------------


def carrier(headers: Iterable[tuple[Any, Any]] | Mapping[Any, Any] | None) -> dict[str, str] | None:
    """The trace context among ``headers`` (pairs or a mapping; names and values bytes or
    str, as the broker's client gives them): ``{"traceparent": ..., "tracestate": ...}``,
    or None when there is none. Call only when :data:`on` is true."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    found: dict[str, str] = {}
    for name, value in pairs:
        key = name if isinstance(name, str) else _B_HEADERS.get(bytes(name))
        if key not in HEADERS:
            continue
        if isinstance(value, bytes | bytearray | memoryview):
            value = bytes(value).decode("latin-1")
        found[key] = str(value)
    return found or None


def zmq_frame(trace: Mapping[str, str]) -> bytes:
    """The frame that carries ``trace`` after an Arroyo-framed ZeroMQ message."""
    lines = "".join(f"{name}={value}\n" for name, value in trace.items())
    return ZMQ_FRAME + lines.encode("latin-1")


def from_zmq_frame(frame: bytes) -> dict[str, str] | None:
    """The trace context in a frame made by :func:`zmq_frame`."""
    found = {}
    for line in frame[len(ZMQ_FRAME) :].decode("latin-1").splitlines():
        name, _, value = line.partition("=")
        if name in HEADERS:
            found[name] = value
    return found or None


# -- what the runtime calls (only when on) -------------------------------------------------


def broker_of(connector: object) -> str:
    """``messaging.system`` of a listener or publisher: its broker package's name."""
    parts = type(connector).__module__.split(".")
    if len(parts) > 2 and parts[:2] == ["arroyo", "brokers"]:
        name = parts[2]
        return "zeromq" if name == "zmq" else name
    return type(connector).__name__


def _epoch_ns(monotonic: float) -> int:
    """A ``time.monotonic()`` reading as nanoseconds since the epoch."""
    return time.time_ns() - int((time.monotonic() - monotonic) * 1e9)


def _attributes(block: str, system: str, where: str, message: Message | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "arroyo.block": block,
        "messaging.system": system,
        "messaging.destination.name": where,
    }
    if message is not None:
        attributes["arroyo.stream"] = message.stream
        attributes["messaging.message.id"] = message.id
    return attributes


class Processing:
    """The ``receive`` and ``process`` spans of one received message (a context manager
    around processing it); :attr:`context` is the parent of its ``publish`` spans."""

    __slots__ = ("_use", "context", "span")

    def __init__(self, received: Received, block: str, listener: object) -> None:
        from opentelemetry import propagate, trace

        parent = propagate.extract(received.trace) if received.trace else None
        where = str(received.source.get("url", getattr(listener, "name", "")))
        attributes = _attributes(block, broker_of(listener), where, None)
        tracer = _tracer
        receive = tracer.start_span(
            "receive",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
            start_time=_epoch_ns(received.received_at),
        )
        receive.end()
        self.span = tracer.start_span(
            "process", context=trace.set_span_in_context(receive), attributes=attributes
        )
        self.context = trace.set_span_in_context(self.span)
        self._use = trace.use_span(self.span, end_on_exit=True)
        received.context = self.context

    def __enter__(self) -> Processing:
        self._use.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._use.__exit__(*exc)

    def outcome(self, messages: list[Message], failed: str | None) -> None:
        """Note what came of it: the run of its first output, or why it failed."""
        if messages:
            self.span.set_attribute("arroyo.stream", messages[0].stream)
            self.span.set_attribute("messaging.message.id", messages[0].id)
        if failed is not None:
            from opentelemetry.trace import Status, StatusCode

            self.span.set_status(Status(StatusCode.ERROR, failed))


def publishing(message: Message, received: Received, block: str, publisher: object) -> Any:
    """Start the ``publish`` span of ``message`` to ``publisher`` (child of the process
    span of ``received``); returns ``(message with its trace context, span)``. End the
    span with :func:`published` once the send completes."""
    from dataclasses import replace

    from opentelemetry import propagate, trace

    where = getattr(publisher, "name", type(publisher).__name__)
    span = _tracer.start_span(
        "publish",
        context=received.context,
        kind=trace.SpanKind.PRODUCER,
        attributes=_attributes(block, broker_of(publisher), where, message),
    )
    headers: dict[str, str] = {}
    propagate.inject(headers, context=trace.set_span_in_context(span))
    return replace(message, trace=headers), span


def published(span: Any, done: Any) -> None:
    """End a ``publish`` span when its send ``done`` (a future) completes."""

    def end(future: Any) -> None:
        if future.cancelled():
            span.set_attribute("arroyo.cancelled", True)
        elif future.exception() is not None:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, str(future.exception())))
        span.end()

    done.add_done_callback(end)


def current_ids() -> tuple[str, str] | None:
    """The trace id (32 hex digits) and span id (16) of the span current here, or None
    when there is none or tracing is off (for log lines)."""
    if not on:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
