"""Tracing (arroyo.runtime.tracing) of a Block on in-process connectors: spans, their
parents, the trace context an output carries, and what tracing off leaves alone."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from arroyo import encode
from arroyo.errors import MissingDependencyError
from arroyo.message import Event, Message
from arroyo.runtime import Block, Intake, Listener, Operator, Output, Received, RetryPolicy, tracing
from arroyo.runtime.logs import JsonFormatter
from arroyo.testing import Recorder

INCOMING = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
"""A traceparent as an upstream service sends it (the W3C specification's example)."""


class Given(Listener):
    """Hands over the given messages, each with the given headers, then ends."""

    def __init__(self, items: list[tuple[Message, Mapping[str, str] | None]]) -> None:
        super().__init__()
        self.items = items
        self.acked: list[Received] = []

    async def start(self, intake: Intake) -> None:
        for message, headers in self.items:
            received = Received(encode(message), {"url": "given://test"})
            if tracing.on:
                received.trace = tracing.carrier(headers)
            await intake.put(received)

    async def stop(self) -> None:
        pass

    async def ack(self, received: Received) -> None:
        self.acked.append(received)


class Doubler(Operator):
    """Returns two new events per input (logging one line while it works)."""

    async def process(self, message: Message) -> Output:
        logging.getLogger("test.doubler").info("doubling %s", message.id)
        assert isinstance(message, Event)
        return [Event(stream=message.stream, seq=i, payload=message.payload) for i in (1, 2)]


class Failing(Operator):
    async def process(self, message: Message) -> Output:
        raise ValueError("no good")


def context_of(headers: Mapping[str, str]) -> tuple[int, int]:
    """The trace and span id in W3C trace-context headers (read by OpenTelemetry)."""
    from opentelemetry import propagate, trace

    context = trace.get_current_span(propagate.extract(headers)).get_span_context()
    return context.trace_id, context.span_id


def by_name(exporter: InMemorySpanExporter) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for span in exporter.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


async def test_a_traceparent_that_came_in_is_the_parent_of_receive_process_and_publish(
    spans: InMemorySpanExporter,
) -> None:
    incoming = Event(stream="scan-7", payload=b"x")
    listener = Given([(incoming, {"traceparent": INCOMING, "tracestate": "vendor=1"})])
    first, second = Recorder(), Recorder()
    block = Block(listener, Doubler(), [first, second], name="doubling")
    await block.run()

    found = by_name(spans)
    assert sorted(found) == ["process", "publish", "receive"]
    (receive,), (process,), publish = found["receive"], found["process"], found["publish"]
    trace_id = int(INCOMING.split("-")[1], 16)
    assert {s.context.trace_id for s in [receive, process, *publish]} == {trace_id}
    assert receive.parent.span_id == int(INCOMING.split("-")[2], 16)
    assert receive.parent.is_remote
    assert process.parent.span_id == receive.context.span_id
    assert len(publish) == 4  # two outputs, two publishers
    assert {s.parent.span_id for s in publish} == {process.context.span_id}
    assert receive.attributes["arroyo.block"] == "doubling"
    assert receive.attributes["messaging.destination.name"] == "given://test"
    assert process.attributes["arroyo.stream"] == "scan-7"
    assert {s.attributes["messaging.destination.name"] for s in publish} == {"Recorder"}
    assert {s.attributes["arroyo.stream"] for s in publish} == {"scan-7"}

    # Each output carries the context of its own publish span, for the broker's headers.
    sent = first.published + second.published
    carried = {context_of(m.trace) for m in sent if m.trace is not None}
    assert carried == {(s.context.trace_id, s.context.span_id) for s in publish}
    assert {m.trace.get("tracestate") for m in sent if m.trace is not None} == {"vendor=1"}


async def test_without_a_traceparent_each_message_starts_a_trace_of_its_own(
    spans: InMemorySpanExporter,
) -> None:
    items: list[tuple[Message, Mapping[str, str] | None]] = [
        (Event(stream="a", payload=b"1"), None),
        (Event(stream="a", payload=b"2"), {"other": "header"}),
    ]
    await Block(Given(items), publishers=[Recorder()]).run()
    receives = by_name(spans)["receive"]
    assert [r.parent for r in receives] == [None, None]
    assert len({r.context.trace_id for r in receives}) == 2


async def test_a_dead_lettered_message_ends_its_process_span_in_error(
    spans: InMemorySpanExporter,
) -> None:
    dead = Recorder()
    block = Block(
        Given([(Event(payload=b"x"), {"traceparent": INCOMING})]),
        Failing(),
        [Recorder()],
        dead_letter=dead,
        retry=RetryPolicy(attempts=1),
    )
    await block.run()
    (process,) = by_name(spans)["process"]
    assert process.status.status_code.name == "ERROR"
    assert "no good" in (process.status.description or "")
    assert len(dead.dead_letters) == 1


async def test_tracing_off_makes_no_span_and_outputs_carry_nothing(
    spans: InMemorySpanExporter,
) -> None:
    tracing.disable()
    out = Recorder()
    block = Block(Given([(Event(payload=b"x"), {"traceparent": INCOMING})]), publishers=[out])
    await block.run()
    assert spans.get_finished_spans() == ()
    assert [m.trace for m in out.published] == [None]
    assert block.listener.acked[0].trace is None  # type: ignore[attr-defined]


def test_json_log_lines_name_the_trace_of_the_span_they_are_logged_in(
    spans: InMemorySpanExporter, provider: TracerProvider
) -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    assert "trace_id" not in json.loads(formatter.format(record))
    with provider.get_tracer("test").start_as_current_span("work") as span:
        line = json.loads(formatter.format(record))
    context = span.get_span_context()
    assert line["trace_id"] == f"{context.trace_id:032x}"
    assert line["span_id"] == f"{context.span_id:016x}"


def test_carrier_takes_pairs_or_mappings_of_bytes_or_str() -> None:
    assert tracing.carrier(None) is None
    assert tracing.carrier([(b"x", b"y")]) is None
    assert tracing.carrier([("traceparent", INCOMING.encode()), ("arroyo.id", b"1")]) == {
        "traceparent": INCOMING
    }
    assert tracing.carrier({b"traceparent": INCOMING.encode(), b"tracestate": b"a=1"}) == {
        "traceparent": INCOMING,
        "tracestate": "a=1",
    }


def test_the_zeromq_trace_frame_round_trips() -> None:
    frame = tracing.zmq_frame({"traceparent": INCOMING, "tracestate": "a=1,b=2"})
    assert frame.startswith(tracing.ZMQ_FRAME)
    assert tracing.from_zmq_frame(frame) == {"traceparent": INCOMING, "tracestate": "a=1,b=2"}


def test_broker_of_names_the_connector_package() -> None:
    from arroyo.brokers.memory import MemoryPublisher

    assert tracing.broker_of(MemoryPublisher("x")) == "memory"
    assert tracing.broker_of(Recorder()) == "Recorder"


_WITHOUT_OTEL = """
import sys
sys.modules["opentelemetry"] = None  # as if the extra 'otel' were not installed
import asyncio, arroyo
from arroyo.brokers.memory import MemoryListener, MemoryPublisher, topic
from arroyo.runtime import Block, tracing
from arroyo.testing import make_run
for m in make_run(3, "r"):
    topic("no-otel-src").put(m)
out = MemoryPublisher("no-otel-dst")
asyncio.run(Block(MemoryListener("no-otel-src", stop_at_end=True), publishers=[out]).run())
assert len(topic("no-otel-dst").messages()) == 5
try:
    tracing.enable()
except arroyo.errors.MissingDependencyError as exc:
    print(exc)
"""


def test_without_the_extra_the_core_runs_and_tracing_says_what_to_install() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_OTEL], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert line.startswith("Tracing needs the Python package 'opentelemetry'")
    assert "arroyo-streams[otel]" in line


def test_enable_without_the_packages_raises_missing_dependency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", None)
    with pytest.raises(MissingDependencyError, match=r"arroyo-streams\[otel\]"):
        tracing.enable()
    assert not tracing.on


class _Lines(logging.Handler):
    """Keeps each record as JsonFormatter writes it."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


async def test_what_an_operator_logs_names_the_trace_of_its_message(
    spans: InMemorySpanExporter,
) -> None:
    handler = _Lines()
    logger = logging.getLogger("test.doubler")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        listener = Given([(Event(payload=b"x"), {"traceparent": INCOMING})])
        await Block(listener, Doubler(), [Recorder()]).run()
    finally:
        logger.removeHandler(handler)
    (line,) = handler.lines
    (process,) = by_name(spans)["process"]
    assert line["trace_id"] == INCOMING.split("-")[1]
    assert line["span_id"] == f"{process.context.span_id:016x}"


_ENABLE = """
import sys
from arroyo.runtime import tracing
from opentelemetry import trace
try:
    tracing.enable()
except Exception as exc:
    print(type(exc).__name__, exc)
else:
    print(tracing.on, type(trace.get_tracer_provider()).__module__)
"""


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"OTEL_TRACES_EXPORTER": "none"}, "True opentelemetry.sdk.trace"),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "True opentelemetry.sdk.trace"),
        ({"OTEL_TRACES_EXPORTER": "console,none"}, "True opentelemetry.sdk.trace"),
        ({"OTEL_SDK_DISABLED": "true"}, "False opentelemetry.trace"),
        (
            {"OTEL_TRACES_EXPORTER": "jaeger"},
            "ConfigError OTEL_TRACES_EXPORTER='jaeger': unknown exporter 'jaeger'; "
            "Arroyo knows otlp, console and none",
        ),
    ],
)
def test_enable_sets_up_the_sdk_as_the_otel_variables_say(
    variables: dict[str, str], expected: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", _ENABLE],
        capture_output=True,
        text=True,
        env={**env, **variables},
        check=False,
        timeout=60,
    )
    assert done.stdout.strip() == expected, done.stderr
