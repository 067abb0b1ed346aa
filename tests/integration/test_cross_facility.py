"""Schema-checked streams from one facility to another (connectors/cross-facility.yaml).

Facility A writes with version 2 of its metadata schema into Kafka; the pipeline checks
every message against A's schema and sends it over TLS to facility B (a RabbitMQ queue,
or a Kafka topic), where B reads with version 1 and with version 2. Everything runs on
the real brokers, through the TLS listeners, with and without a schema registry.
"""

from __future__ import annotations

import asyncio
import copy
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from arroyo import Event, Run, Start, Stop
from arroyo.codec import Codec
from arroyo.message import Message
from arroyo.registry import Registry
from arroyo.schema import SCHEMA_DIR, Schema, SchemaStore, load
from arroyo.testing import Workers

ROOT = Path(__file__).parents[2]
ReadTopic = Callable[..., list[Any]]
CONNECTOR = ROOT / "connectors" / "cross-facility.yaml"
FACILITY_B = ROOT / "connectors" / "facility-b.yaml"
V1 = load(SCHEMA_DIR / "examples" / "frame-metadata-v1.avsc")
V2 = load(SCHEMA_DIR / "examples" / "frame-metadata-v2.avsc")


def tls_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        message = f"{name} is not set: start the brokers with compose/brokers.sh (TLS ports)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return value


@dataclass
class Facilities:
    """The names and addresses of one test's facility A and facility B."""

    env: dict[str, str]
    topic: str
    queue: str
    b_topic: str
    config: Path
    registry: str | None
    b_config: Path


@pytest.fixture(params=["single-object", "registry"])
def facilities(
    request: pytest.FixtureRequest,
    kafka_bootstrap: str,
    amqp_url: str,
    unique_name: Callable[[str], str],
    kafka_topics: Any,
    tmp_path: Path,
) -> Facilities:
    registry = None
    if request.param == "registry":
        registry = request.getfixturevalue("registry_url")
    ca = tls_env("ARROYO_TLS_CA")
    kafka_tls, amqps = tls_env("ARROYO_KAFKA_TLS"), tls_env("ARROYO_AMQPS")
    topic, queue, b_topic = unique_name("a-frames"), unique_name("b-queue"), unique_name("b-top")
    env = {
        **os.environ,
        "ARROYO_TLS_CA": ca,
        "FACILITY_A_KAFKA": kafka_tls,
        "FACILITY_A_TOPIC": topic,
        "FACILITY_A_GROUP": unique_name("g1"),
        "FACILITY_A_GROUP_KAFKA": unique_name("g2"),
        "FACILITY_B_AMQPS": amqps.split("@", 1)[1].rstrip("/"),
        "FACILITY_B_PASSWORD": "guest",
        "FACILITY_B_QUEUE": queue,
        "FACILITY_B_KAFKA": kafka_tls,
        "FACILITY_B_TOPIC": b_topic,
    }
    config, b_config = CONNECTOR, FACILITY_B
    if registry is not None:  # the same pipelines, with the registry uncommented
        config = with_registry(CONNECTOR, registry, tmp_path)
        b_config = with_registry(FACILITY_B, registry, tmp_path)
    kafka_topics.create(topic, f"{topic}.rejected", f"{topic}.rejected-kafka", b_topic)
    return Facilities(env, topic, queue, b_topic, config, registry, b_config)


def with_registry(connector: Path, registry: str, folder: Path) -> Path:
    """A copy of ``connector`` with its ``registry`` setting uncommented."""
    text = connector.read_text().replace("../schemas/", f"{ROOT}/schemas/")
    data = yaml.safe_load(text)
    data["registry"] = {"url": registry}
    config = folder / f"{connector.stem}-registry.yaml"
    config.write_text(yaml.safe_dump(data))
    return config


def a_writes(bootstrap: str, facilities: Facilities, messages: list[tuple[Codec, Message]]) -> None:
    """Facility A's instruments produce into A's topic (each with its own codec)."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap})
    for codec, message in messages:
        producer.produce(facilities.topic, codec.encode(message), key=message.stream.encode())
    assert producer.flush(30) == 0


def a_codec(facilities: Facilities, writer: Any = V2) -> Codec:
    registry = Registry(facilities.registry) if facilities.registry else None
    return Codec(writer=writer, registry=registry, subject=f"{facilities.topic}-value")


def b_readers(facilities: Facilities) -> tuple[Codec, Codec]:
    """B's two readers: one with v1 of the schema, one with v2."""
    if facilities.registry:
        return (
            Codec(reader=V1, registry=Registry(facilities.registry)),
            Codec(reader=V2, registry=Registry(facilities.registry)),
        )
    return Codec(reader=V1, store=SchemaStore([V2])), Codec(reader=V2)


def start_pipeline(workers: Workers, facilities: Facilities, block: str) -> subprocess.Popen[bytes]:
    return workers.start(facilities.config, "--block", block, env=facilities.env)


def stop_pipeline(workers: Workers, worker: subprocess.Popen[bytes]) -> str:
    """SIGTERM; the worker's output, once it has exited with 0."""
    code, log = workers.stop(worker), workers.log(worker)
    assert code == 0, log[-3000:]
    return log


def b_receives_from_rabbitmq(amqp: str, queue: str, count: int) -> list[bytes]:
    import aio_pika

    async def receive() -> list[bytes]:
        bodies: list[bytes] = []
        connection = await aio_pika.connect_robust(amqp)
        async with connection:
            channel = await connection.channel()
            deadline = time.monotonic() + 60
            while len(bodies) < count and time.monotonic() < deadline:
                try:
                    q = await channel.declare_queue(queue, durable=True, passive=True)
                except aio_pika.exceptions.ChannelNotFoundEntity:
                    channel = await connection.channel()
                    await asyncio.sleep(0.1)  # the pipeline has not declared it yet
                    continue
                message = await q.get(fail=False, timeout=5)
                if message is None:
                    await asyncio.sleep(0.05)
                    continue
                bodies.append(message.body)
                await message.ack()
        return bodies

    return asyncio.run(receive())


def a_run(facilities: Facilities, frames: int) -> tuple[list[Message], list[tuple[Codec, Message]]]:
    """A's run, written with v2, with two bad messages in the middle (generic metadata
    that breaks A's schema: a required field missing, a type changed)."""
    run = Run("scan-7")
    good: list[Message] = [run.start({"sample": "Si"})]
    for i in range(frames):
        metadata = {"frame": i, "exposure_s": 0.1, "detector": "eiger", "energy_kev": 12.0 + i}
        good.append(run.event(metadata, f"frame {i}".encode()))
    good.append(run.stop({"frames": frames}))
    codec, generic = a_codec(facilities), Codec()
    missing = Event({"frame": 99, "exposure_s": 0.1}, b"bad", stream="scan-7", seq=90)
    wrong = Event({"frame": "seven", "exposure_s": 0.1, "detector": "x"}, stream="scan-7")
    written = [(codec, m) for m in good]
    bad = [(generic, missing), (generic, wrong)]
    if facilities.registry:  # an instrument registered an incompatible version of the schema
        changed = copy.deepcopy(V2.definition)
        changed["fields"][0]["type"] = "string"
        typed = Event({"frame": "8", "exposure_s": 0.1, "detector": "x", "energy_kev": None})
        bad.append((a_codec(facilities, Schema.from_definition(changed)), typed))
    written[3:3] = bad
    return good, written


def check_b_reads_v1_and_v2(
    good: list[Message], bodies: list[bytes], facilities: Facilities
) -> None:
    v1, v2 = b_readers(facilities)
    as_v2 = [v2.decode(b) for b in bodies]
    as_v1 = [v1.decode(b) for b in bodies]
    assert as_v2 == good  # nothing lost, in order, exactly what A wrote
    for old, new in zip(as_v1, as_v2, strict=True):
        assert (old.id, old.seq, type(old)) == (new.id, new.seq, type(new))
        if isinstance(new, Event):
            assert isinstance(old, Event)
            assert old.metadata == {k: v for k, v in new.metadata.items() if k != "energy_kev"}
            assert old.payload == new.payload
    assert isinstance(as_v1[0], Start)
    assert isinstance(as_v1[-1], Stop)
    framing = 0x00 if facilities.registry else 0xC3
    assert all(b[0] == framing for b in bodies)


def check_dead_letters(
    read_topic: ReadTopic, bootstrap: str, topic: str, facilities: Facilities
) -> None:
    expected = 3 if facilities.registry else 2
    letters = read_topic(bootstrap, topic, expected, within=60)
    reasons = [dict(m.headers())["arroyo.dead-letter.reason"].decode() for m in letters]
    assert len(reasons) == expected
    assert "metadata.detector: expected string" in reasons[0]
    assert "metadata.frame: expected long, got 'seven'" in reasons[1]
    if facilities.registry:
        assert "cannot be read as" in reasons[2]
        assert (
            "at metadata.frame: reader type: long not compatible with writer type: string"
            in (reasons[2])
        )


@pytest.mark.timeout(240)
def test_a_writes_v2_b_reads_v1_and_v2_over_rabbitmq(
    facilities: Facilities,
    kafka_bootstrap: str,
    amqp_url: str,
    workers: Workers,
    read_topic: ReadTopic,
) -> None:
    good, written = a_run(facilities, 20)
    a_writes(kafka_bootstrap, facilities, written)
    worker = start_pipeline(workers, facilities, "to-b-rabbitmq")
    try:
        bodies = b_receives_from_rabbitmq(amqp_url, facilities.queue, len(good))
    finally:
        log = stop_pipeline(workers, worker)
    check_b_reads_v1_and_v2(good, bodies, facilities)
    check_dead_letters(read_topic, kafka_bootstrap, f"{facilities.topic}.rejected", facilities)
    assert "guest:guest" not in log


@pytest.mark.timeout(240)
def test_facility_b_archives_what_a_sends_reading_it_with_v1(
    facilities: Facilities, kafka_bootstrap: str, workers: Workers, tmp_path: Path
) -> None:
    """connectors/facility-b.yaml as shipped: B's v1 reader resolves A's v2 data (the
    schemas beside its own, or the registry) and archives it, nothing refused."""
    from fastavro import reader

    archive = tmp_path / "b" / "archive.avro"
    facilities.env["FACILITY_B_ARCHIVE"] = str(archive)
    good, written = a_run(facilities, 20)
    a_writes(kafka_bootstrap, facilities, written)
    a = start_pipeline(workers, facilities, "to-b-rabbitmq")
    b = workers.start(facilities.b_config, env=facilities.env)

    def archived() -> list[dict[str, Any]]:
        with archive.open("rb") as file:
            return list(reader(file))

    def archived_so_far() -> int:
        """Records in the archive while B writes it (0 before its header is out)."""
        try:
            return len(archived())
        except (OSError, ValueError, EOFError):
            return 0

    try:
        deadline = time.monotonic() + 90
        while (count := archived_so_far()) < len(good):
            assert time.monotonic() < deadline, f"archived {count} of {len(good)}"
            time.sleep(0.2)
    finally:
        stop_pipeline(workers, a)
        log = stop_pipeline(workers, b)
    records = archived()
    assert [r["id"] for r in records] == [m.id for m in good]
    events = [r["body"] for r in records[1:-1]]
    assert [e["metadata"] for e in events] == [
        {"frame": i, "exposure_s": 0.1, "detector": "eiger"} for i in range(20)
    ]
    assert " 0 dead-lettered, 0 dropped," in log  # B refused nothing


@pytest.mark.timeout(240)
def test_a_writes_v2_b_reads_v1_and_v2_over_kafka(
    facilities: Facilities, kafka_bootstrap: str, workers: Workers, read_topic: ReadTopic
) -> None:
    good, written = a_run(facilities, 20)
    a_writes(kafka_bootstrap, facilities, written)
    worker = start_pipeline(workers, facilities, "to-b-kafka")
    try:
        outputs = read_topic(kafka_bootstrap, facilities.b_topic, len(good), within=60)
    finally:
        stop_pipeline(workers, worker)
    check_b_reads_v1_and_v2(good, [m.value() for m in outputs], facilities)
    rejected = f"{facilities.topic}.rejected-kafka"
    check_dead_letters(read_topic, kafka_bootstrap, rejected, facilities)


@pytest.fixture
def wrong_ca(tmp_path: Path) -> str:
    """A CA that did not sign the brokers' certificates."""
    key, cert = tmp_path / "other.key", tmp_path / "other-ca.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=Some other CA"),
        ],
        check=True,
        capture_output=True,
    )
    return str(cert)


@pytest.mark.parametrize("facilities", ["single-object"], indirect=True)  # TLS, not framing
@pytest.mark.parametrize("block", ["to-b-rabbitmq", "to-b-kafka"])
@pytest.mark.timeout(120)
def test_a_wrong_ca_fails_at_start_saying_the_certificate_could_not_be_verified(
    facilities: Facilities, wrong_ca: str, block: str, workers: Workers
) -> None:
    facilities.env.update(ARROYO_TLS_CA=wrong_ca, FACILITY_B_PASSWORD="pw-s3cret-xyz")
    worker = start_pipeline(workers, facilities, block)
    assert worker.wait(timeout=90) != 0
    log = workers.log(worker)
    assert "certificate verify failed" in log
    assert "pw-s3cret-xyz" not in log
