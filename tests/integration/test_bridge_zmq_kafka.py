"""The instrument bridge, end to end: a detector on ZeroMQ -> Arroyo -> real Kafka -> a raw
confluent-kafka consumer. Real processes (``arroyo simulate``, ``arroyo bridge``, ``arroyo
run``), a real bluesky RunEngine behind bluesky's 0MQ Publisher and Proxy."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from arroyo import Event, Start, Stop, decode
from arroyo.brokers import open_listener, open_publisher
from arroyo.message import Message
from arroyo.parsers.bluesky import BlueskyParser
from arroyo.runtime import Block
from arroyo.simulate import frame
from arroyo.testing import free_port

ck = pytest.importorskip("confluent_kafka")
kafka_admin = pytest.importorskip("confluent_kafka.admin")

ROOT = Path(__file__).resolve().parents[2]
ARROYO = [sys.executable, "-m", "arroyo"]
ReadTopic = Callable[..., list[Any]]
MAX_BYTES = 20 << 20  # the test broker allows messages up to 20 MiB


@pytest.fixture
def topic(kafka_topics: Any) -> Callable[[], str]:
    """Make topics that take 20 MiB messages (deleted after the test)."""
    return lambda: kafka_topics("t", **{"max.message.bytes": str(MAX_BYTES)})


def check_runs(
    records: list[Any], streams: list[str], frames: int, shape: tuple[int, ...], dtype: str
) -> None:
    """Each run: Start, every frame in order with identical dtype/shape/bytes, Stop."""
    by_stream: dict[str, list[Message]] = {s: [] for s in streams}
    for record in records:
        message = decode(record.value())
        assert record.key() == message.stream.encode()
        by_stream[message.stream].append(message)
    for run, stream in enumerate(streams):
        messages = by_stream[stream]
        assert len(messages) == frames + 2, stream
        start, *events, stop = messages
        assert isinstance(start, Start) and start.data["frames"] == frames
        assert isinstance(stop, Stop) and stop.data["exit_status"] == "success"
        assert [m.seq for m in messages] == list(range(frames + 2))
        for index, event in enumerate(events):
            assert isinstance(event, Event) and event.metadata["frame"] == index
            assert event.array is not None
            assert (event.array.dtype, event.array.shape) == (np.dtype(dtype).str, shape)
            assert event.payload == frame(index, shape, dtype, run).tobytes()


def finish(process: subprocess.Popen[bytes], within: float = 60) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        raise AssertionError(f"{process.args} did not finish: {err.decode()[-3000:]}") from None
    return process.returncode, err.decode()


@pytest.mark.parametrize(
    ("fmt", "shape", "dtype", "frames"),
    [
        ("json-frame", (16, 32), "<u2", 200),  # 1 KiB frames
        ("msgpack-array", (16, 32), ">u2", 200),
        ("json-frame", (1024, 1024), ">u4", 12),  # 4 MiB frames, big-endian
    ],
    ids=["json-frame-1KiB", "msgpack-array-1KiB", "json-frame-4MiB"],
)
def test_simulator_to_kafka_with_the_bridge_one_liner(
    kafka_bootstrap: str,
    topic: Callable[[], str],
    read_topic: ReadTopic,
    fmt: str,
    shape: tuple[int, ...],
    dtype: str,
    frames: int,
) -> None:
    name, port, runs = topic(), free_port(), 2
    total = runs * (frames + 2)
    bridge = subprocess.Popen(
        [
            *ARROYO,
            "bridge",
            f"zmq+pull://127.0.0.1:{port}?parser={fmt}",
            f"kafka://{kafka_bootstrap}/{name}?message.max.bytes={MAX_BYTES}",
            "--count",
            str(total),
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    shape_arg = "x".join(map(str, shape))
    simulator = subprocess.run(
        [
            *ARROYO,
            "simulate",
            f"zmq+push://127.0.0.1:{port}?bind=true",
            "--format",
            fmt,
            "--frames",
            str(frames),
            "--shape",
            shape_arg,
            "--dtype",
            dtype,
            "--runs",
            str(runs),
            "--stream",
            name,
        ],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    assert simulator.returncode == 0, simulator.stderr.decode()
    code, log = finish(bridge)
    assert code == 0, log
    assert f"{total} received, {total} published, {total} acknowledged" in log
    records = read_topic(kafka_bootstrap, name, total, within=60)
    assert len(records) == total
    check_runs(records, [f"{name}-{r}" for r in range(runs)], frames, shape, dtype)


def test_the_zmq_to_kafka_connector_with_4_mib_frames_and_a_dead_letter(
    kafka_bootstrap: str, topic: Callable[[], str], read_topic: ReadTopic
) -> None:
    """connectors/zmq-to-kafka.yaml as shipped (addresses from the environment): frames
    go to Kafka, a malformed message to the dead-letter topic, and the bridge goes on."""
    frames_topic, dead_topic, port = topic(), topic(), free_port()
    env = {
        **os.environ,
        "ARROYO_ZMQ_SOURCE": f"zmq+pull://127.0.0.1:{port}",
        "ARROYO_KAFKA_URL": f"kafka://{kafka_bootstrap}/{frames_topic}",
        "ARROYO_KAFKA_DLQ": f"kafka://{kafka_bootstrap}/{dead_topic}",
    }
    bridge = subprocess.Popen(
        [*ARROYO, "run", "connectors/zmq-to-kafka.yaml"], cwd=ROOT, env=env, stderr=subprocess.PIPE
    )
    shape, frames = (1024, 1024), 8
    good = frame(0, shape, "<u4")
    bad = [json.dumps({"dtype": "<u4", "shape": [1024, 1024]}).encode(), good.tobytes()[:-4]]
    try:
        with zmq.Context() as context, context.socket(zmq.PUSH) as push:
            push.setsockopt(zmq.LINGER, 30_000)
            push.bind(f"tcp://127.0.0.1:{port}")
            push.send_multipart(
                [json.dumps({"type": "start", "stream": frames_topic, "frames": frames}).encode()]
            )
            for index in range(frames):
                if index == 3:
                    push.send_multipart(bad)
                array = frame(index, shape, "<u4")
                header = {
                    "stream": frames_topic,
                    "dtype": "<u4",
                    "shape": [1024, 1024],
                    "frame": index,
                }
                push.send_multipart([json.dumps(header).encode(), array], copy=False)
            push.send_multipart(
                [
                    json.dumps(
                        {"type": "stop", "stream": frames_topic, "exit_status": "success"}
                    ).encode()
                ]
            )
        records = read_topic(kafka_bootstrap, frames_topic, frames + 2, within=60)
        dead = read_topic(kafka_bootstrap, dead_topic, 1, within=60)
    finally:
        bridge.send_signal(signal.SIGTERM)
        code, log = finish(bridge)
    assert code == 0, log
    check_runs(records, [frames_topic], frames, shape, "<u4")
    (letter,) = dead
    headers = {k: v for k, v in letter.headers()}
    assert headers["arroyo.dead-letter.error"] == b"DecodeError"
    assert b"need 4194304" in headers["arroyo.dead-letter.reason"]
    assert letter.value() == bad[0]  # the original parts: the header, then the frame
    assert headers["arroyo.dead-letter.part.1"] == bad[1]


def simulate_1024x1024(port: int, frames: int) -> str:
    """The README's "try it": ``arroyo simulate`` of 2 MiB frames, as a user types it;
    the run's stream id (it prints it)."""
    done = subprocess.run(
        [
            *ARROYO,
            "simulate",
            f"zmq+push://127.0.0.1:{port}?bind=true",
            "--frames",
            str(frames),
            "--shape",
            "1024x1024",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().rsplit("streams ", 1)[1]


def test_the_readme_try_it_bridges_2_mib_frames_with_default_settings(
    kafka_bootstrap: str, kafka_topics: Any, read_topic: ReadTopic, unique_name: Any
) -> None:
    """``arroyo bridge 'zmq+pull://...?parser=json-frame' kafka://HOST/TOPIC`` with no
    settings, into a topic that does not exist yet: every 2 MiB frame arrives. The topic
    is created with its own max.message.bytes, so a stock broker (1 MiB default) takes
    them too, not only the test broker with its raised default."""
    name, port, frames = unique_name("frames"), free_port(), 20
    kafka_topics.made.append(name)  # deleted after the test
    bridge = subprocess.Popen(
        [
            *ARROYO,
            "bridge",
            f"zmq+pull://127.0.0.1:{port}?parser=json-frame",
            f"kafka://{kafka_bootstrap}/{name}",
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    try:
        stream = simulate_1024x1024(port, frames)
        records = read_topic(kafka_bootstrap, name, frames + 2, within=90)
    finally:
        bridge.send_signal(signal.SIGINT)  # Ctrl-C
        code, log = finish(bridge)
    assert code == 0, log
    assert "ERROR" not in log, log  # nothing refused: no frame too large
    assert "takes messages up to" not in log, log  # and no warning about the topic
    check_runs(records, [stream], frames, (1024, 1024), "<u2")
    admin = kafka_admin.AdminClient({"bootstrap.servers": kafka_bootstrap})
    resource = kafka_admin.ConfigResource("topic", name)
    entry = admin.describe_configs([resource])[resource].result(30)["max.message.bytes"]
    assert int(entry.value) == 64 << 20
    assert entry.source == kafka_admin.ConfigSource.DYNAMIC_TOPIC_CONFIG.value


def test_a_topic_smaller_than_the_frames_gets_one_warning_before_the_first_frame(
    kafka_bootstrap: str, kafka_topics: Any
) -> None:
    """A topic made with a stock broker's default limit (1 MiB): the bridge says so once,
    naming the topic, its limit and the setting to raise, before any frame is sent."""
    name, port = kafka_topics("small", **{"max.message.bytes": "1048588"}), free_port()
    bridge = subprocess.Popen(
        [
            *ARROYO,
            "bridge",
            f"zmq+pull://127.0.0.1:{port}?parser=json-frame",
            f"kafka://{kafka_bootstrap}/{name}",
            "--count",
            "4",
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    try:
        simulate_1024x1024(port, 2)
    finally:
        _, log = finish(bridge)
    lines = log.splitlines()
    warnings = [n for n, line in enumerate(lines) if "WARNING" in line]
    assert len(warnings) == 1, log
    warning = lines[warnings[0]]
    assert f"topic {name!r} takes messages up to 1048588 bytes (its max.message.bytes)" in (warning)
    assert "message.max.bytes=67108864" in warning
    assert f"--entity-name {name} --add-config max.message.bytes=67108864" in warning
    started = next(n for n, line in enumerate(lines) if "started:" in line)
    assert warnings[0] < started, log  # said before the bridge takes the first frame


BLUESKY_SCAN = textwrap.dedent(
    """
    import select, sys
    import msgpack
    from bluesky import RunEngine
    from bluesky.callbacks.zmq import Publisher
    from bluesky.plans import scan
    from ophyd.sim import det, motor

    publisher = Publisher(sys.argv[1], prefix=b"scan", serializer=msgpack.dumps)
    # PUB drops what is sent before the subscriptions are in place: send probes on the
    # Publisher's own socket (prefix "probe", which the bridge leaves out) until the test
    # says on stdin that one went all the way through the proxy to the bridge.
    while not select.select([sys.stdin], [], [], 0.02)[0]:
        publisher._socket.send(b"probe ping " + msgpack.dumps({}))
    sys.stdin.readline()
    RE = RunEngine({}, context_managers=[])
    RE.subscribe(publisher)
    (uid,) = RE(scan([det], motor, -1, 1, 10))
    print(uid, flush=True)
    publisher.close()
    """
)


async def test_a_bluesky_scan_through_the_0mq_proxy_into_kafka(
    kafka_bootstrap: str,
    topic: Callable[[], str],
    read_topic: ReadTopic,
    tmp_path: Path,
    until: Callable[..., Any],
) -> None:
    name, in_port, out_port = topic(), free_port(), free_port()
    proxy = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "bluesky-0MQ-proxy"),
        "--in-address", f"127.0.0.1:{in_port}",
        "--out-address", f"127.0.0.1:{out_port}",
    )  # fmt: skip
    script = tmp_path / "scan.py"
    script.write_text(BLUESKY_SCAN)
    listener = open_listener(
        f"zmq+sub://127.0.0.1:{out_port}",
        parser=BlueskyParser(serializer="msgpack", prefix="scan"),
    )
    publisher = open_publisher(f"kafka://{kafka_bootstrap}/{name}")
    block = Block(listener, None, [publisher], name="bluesky-bridge")
    bridge = asyncio.create_task(block.run())
    scanner = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        f"127.0.0.1:{in_port}",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await until(lambda: block.stats.received > 0, within=60, what="a probe reached Arroyo")
        assert block.stats.published == 0  # probes are left out
        assert scanner.stdin is not None
        scanner.stdin.write(b"go\n")
        await scanner.stdin.drain()
        out, err = await asyncio.wait_for(scanner.communicate(), 120)
        assert scanner.returncode == 0, err.decode()[-3000:]
        uid = out.decode().strip()
        records = await asyncio.to_thread(
            read_topic,
            kafka_bootstrap,
            name,
            lambda rs: any(isinstance(decode(r.value()), Stop) for r in rs),
            within=60,
        )
    finally:
        block.stop()
        await asyncio.wait_for(bridge, 30)
        if scanner.returncode is None:
            scanner.kill()
            await scanner.wait()
        proxy.terminate()
        await proxy.wait()
    messages = [decode(r.value()) for r in records]
    assert all(r.key() == uid.encode() for r in records)
    assert [m.seq for m in messages] == list(range(len(messages)))
    start, *middle, stop = messages
    assert isinstance(start, Start) and start.data["uid"] == uid
    assert start.data["plan_name"] == "scan" and start.data["detectors"] == ["det"]
    documents = [m.metadata["document"] for m in middle if isinstance(m, Event)]
    assert documents == ["descriptor"] + ["event"] * 10
    events = [m for m in middle if isinstance(m, Event) and m.metadata["document"] == "event"]
    assert [e.metadata["seq_num"] for e in events] == list(range(1, 11))
    motor = [e.metadata["data"]["motor"] for e in events]  # type: ignore[index]
    assert motor == pytest.approx(list(np.linspace(-1, 1, 10)))
    assert all(isinstance(e.metadata["data"]["det"], float) for e in events)  # type: ignore[index]
    assert isinstance(stop, Stop) and stop.data["run_start"] == uid
    assert stop.data["exit_status"] == "success"
    assert stop.data["num_events"] == {"primary": 10}
    assert block.stats.dead_lettered == 0 and block.stats.dropped == 0
