"""The Kafka connector's own logic, without a broker: options, secrets, exactly-once
checks, and the ready-made kafka-workers pipeline."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from arroyo.brokers import open_listener, open_publisher, parse_url
from arroyo.brokers.kafka import (
    KafkaListener,
    KafkaPublisher,
    _ClientLog,
    _Scrub,
    exactly_once,
    listener,
    publisher,
)
from arroyo.brokers.memory import MemoryPublisher
from arroyo.errors import ConfigError
from arroyo.runtime.parser import AvroParser

ROOT = Path(__file__).resolve().parents[3]


def make_listener(url: str, **options: Any) -> KafkaListener:
    return listener(parse_url(url), options, AvroParser())


def make_publisher(url: str, **options: Any) -> KafkaPublisher:
    from arroyo.codec import default_codec

    return publisher(parse_url(url), options, default_codec())


def test_listener_defaults_commit_manually_from_the_earliest_offset_read_committed() -> None:
    lst = make_listener("kafka://h:9092/frames?group=workers")
    assert lst.topics == ["frames"]
    assert lst.group == "workers"
    assert lst.config["group.id"] == "workers"
    assert lst.config["enable.auto.commit"] == "false"
    assert lst.config["auto.offset.reset"] == "earliest"
    assert lst.config["isolation.level"] == "read_committed"
    assert lst.config["bootstrap.servers"] == "h:9092"
    assert (lst.commit_interval, lst.commit_every, lst.batch_size) == (1.0, 1000, 1000)


def test_several_topics_and_a_regex_subscription() -> None:
    assert make_listener("kafka://h:9092/a,b?group=g").topics == ["a", "b"]
    assert make_listener("kafka://h:9092/^frames-.*?group=g").topics == ["^frames-.*"]


def self_signed_ca(folder: Path) -> str:
    """A CA certificate file librdkafka can load (made here: no broker needed)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "arroyo test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = folder / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


def test_options_come_from_url_and_yaml_and_librdkafka_settings_pass_through(
    tmp_path: Path,
) -> None:
    ca = self_signed_ca(tmp_path)
    lst = make_listener(
        "kafka://h:9092/t?group=g&commit_every=50&fetch.wait.max.ms=10",
        commit_interval_ms=250,
        **{
            "security.protocol": "SSL",
            "ssl.ca.location": ca,
            "session.timeout.ms": 6000,
            "enable.ssl.certificate.verification": True,
        },
    )
    assert lst.commit_every == 50
    assert lst.commit_interval == 0.25
    assert lst.config["fetch.wait.max.ms"] == "10"
    assert lst.config["security.protocol"] == "SSL"
    assert lst.config["ssl.ca.location"] == ca
    assert lst.config["session.timeout.ms"] == "6000"
    assert lst.config["enable.ssl.certificate.verification"] == "true"


def test_bootstrap_servers_setting_overrides_the_url_address() -> None:
    pub = make_publisher("kafka://h:9092/t", **{"bootstrap.servers": "a:1,b:2"})
    assert pub.config["bootstrap.servers"] == "a:1,b:2"


@pytest.mark.parametrize(
    ("url", "options", "expected"),
    [
        ("kafka://h:9092/t?group=g", {"comit_every": 5}, "unknown option(s) 'comit_every'"),
        ("kafka://h:9092/t", {}, "needs a consumer group"),
        ("kafka://h:9092/?group=g", {}, "needs a topic"),
        ("kafka://h:9092/t?group=g", {"group.id": "x"}, "not 'group.id'"),
        ("kafka://h:9092/t?group=g", {"enable.auto.commit": True}, "must stay false"),
        ("kafka://h:9092/t?group=g&batch_size=many", {}, "'batch_size' must be a int"),
        ("kafka://h:9092/t?group=g", {"commit_every": -1}, "must not be negative"),
        ("kafka://h:9092/t?group=g", {"ssl.ca.location": ["a"]}, "must be a string"),
    ],
)
def test_bad_listener_options_are_refused_naming_the_key(
    url: str, options: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError, match=r".*") as caught:
        make_listener(url, **options)
    assert expected in str(caught.value)


def test_publisher_defaults_and_refusals() -> None:
    pub = make_publisher("kafka://h:9092/results", **{"linger.ms": 20})
    assert pub.topic == "results"
    assert pub.config["enable.idempotence"] == "true"
    assert pub.config["linger.ms"] == "20"
    with pytest.raises(ConfigError, match="exactly one topic"):
        make_publisher("kafka://h:9092/a,b")
    with pytest.raises(ConfigError, match=r"transactional\.id is managed"):
        make_publisher("kafka://h:9092/a", **{"transactional.id": "x"})
    with pytest.raises(ConfigError, match="unknown option"):
        make_publisher("kafka://h:9092/a", group="g")


def test_factories_are_reached_through_the_scheme() -> None:
    assert isinstance(open_listener("kafka://h:9092/t?group=g"), KafkaListener)
    assert isinstance(open_publisher("kafka://h:9092/t"), KafkaPublisher)


def test_secrets_are_scrubbed_from_text_and_names() -> None:
    lst = make_listener(
        "kafka://h:9092/t?group=g",
        **{"sasl.password": "hunter2-secret", "ssl.key.password": "k3y-pass", "sasl.username": "u"},
    )
    text = 'Invalid value "hunter2-secret" for "sasl.password"; key k3y-pass; user u'
    assert lst.scrub(text) == 'Invalid value "***" for "sasl.password"; key ***; user u'
    assert "hunter2" not in lst.name
    url = parse_url("kafka://h:9092/t?group=g&sasl.password=hunter2-secret")
    assert "hunter2" not in str(url)
    assert "hunter2" not in make_listener(str(url.raw)).name


def test_client_log_lines_are_scrubbed_and_kept_at_debug_level(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client_log = _ClientLog("kafka://h/t", _Scrub({"sasl.password": "hunter2-secret"}))
    with caplog.at_level(logging.DEBUG, logger="arroyo.kafka.client"):
        client_log.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#1", "pw hunter2-secret")
    assert caplog.records[0].levelno == logging.DEBUG
    assert "hunter2" not in caplog.text
    assert "pw ***" in caplog.text


def test_exactly_once_needs_kafka_publishers_on_the_listener_cluster() -> None:
    lst = make_listener("kafka://h:9092/in?group=g")
    with pytest.raises(ConfigError, match="every publisher must be Kafka"):
        exactly_once(lst, [make_publisher("kafka://h:9092/out"), MemoryPublisher("x")], None)
    with pytest.raises(ConfigError, match="another cluster"):
        exactly_once(lst, [make_publisher("kafka://other:9092/out")], None)
    with pytest.raises(ConfigError, match=r"differs .* in: linger\.ms"):
        exactly_once(
            lst,
            [make_publisher("kafka://h:9092/a"), make_publisher("kafka://h:9092/b?linger.ms=9")],
            None,
        )
    with pytest.raises(ConfigError, match="at least one Kafka publisher"):
        exactly_once(lst, [], None)


def test_exactly_once_shares_one_transactional_producer() -> None:
    lst = make_listener("kafka://h:9092/in?group=g")
    out, same, other = (
        make_publisher("kafka://h:9092/out"),
        make_publisher("kafka://h:9092/dlq"),
        make_publisher("kafka://h:9092/dlq2", **{"message.max.bytes": 20000000}),
    )
    exactly_once(lst, [out], same)
    assert lst._txn is not None and out._txn is lst._txn and same._txn is lst._txn
    assert lst._txn.txn_id.startswith("arroyo-g-")
    lst2, out2 = make_listener("kafka://h:9092/in?group=g"), make_publisher("kafka://h:9092/o")
    exactly_once(lst2, [out2], other)
    assert other._txn is None  # other settings: dead letters stay at-least-once


def test_exactly_once_is_refused_for_other_listeners_by_config(tmp_path: Path) -> None:
    from arroyo.config import build_file

    config = tmp_path / "p.yaml"
    config.write_text(
        "blocks:\n"
        "  - name: b\n"
        "    listener: kafka://h:9092/in?group=g\n"
        "    publishers: [memory://out]\n"
        "    guarantee: exactly-once\n"
    )
    with pytest.raises(ConfigError, match=r"guarantee.*every publisher must be Kafka"):
        build_file(config)


def test_the_kafka_workers_connector_loads_and_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    from arroyo.config import build_file
    from arroyo.operators import Integrate

    monkeypatch.setenv("ARROYO_KAFKA", "broker.example:19092")
    (built,) = build_file(ROOT / "connectors" / "kafka-workers.yaml")
    block = built.block
    assert isinstance(block.listener, KafkaListener)
    assert block.listener.topics == ["frames"]
    assert block.listener.group == "integrate"
    assert block.listener.servers == "broker.example:19092"
    assert isinstance(block.operator, Integrate)
    (results,) = block.publishers
    assert isinstance(results, KafkaPublisher) and results.topic == "frames.integrated"
    assert isinstance(block.dead_letter, KafkaPublisher)
    assert block.dead_letter.topic == "frames.dlq"


class _Record:
    """What the listener reads of a confluent-kafka message."""

    def __init__(self, partition: int, offset: int) -> None:
        self._partition, self._offset = partition, offset

    def topic(self) -> str:
        return "frames"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def error(self) -> None:
        return None

    def value(self) -> bytes:
        return b""


class _Rebalancing:
    """A consumer whose ``poll()`` (``during="poll"``) or second ``consume()``
    (``during="consume"``) serves a rebalance through the listener's own callbacks, as
    librdkafka does: partition 0 is revoked and assigned again, and reading restarts at
    its committed offset 0. The message that ``poll()`` returns is offset 0 of the new
    assignment when the rebalance came first, else offset 5 of the old one."""

    def __init__(self, listener: KafkaListener, during: str) -> None:
        self.listener, self.during, self.consumed = listener, during, 0
        self.resumed: list[Any] = []

    def _rebalance(self) -> None:
        import confluent_kafka as ck

        partitions = [ck.TopicPartition("frames", 0)]
        self.listener._on_revoke(self, partitions)
        self.listener._on_assign(self, partitions)

    def consume(self, count: int, timeout: float) -> list[_Record]:
        self.consumed += 1
        if self.consumed == 1:
            return []
        if self.during == "consume":
            self._rebalance()
            return [_Record(0, offset) for offset in range(3)]
        return [_Record(0, offset) for offset in range(1, 3)]

    def poll(self, timeout: float) -> _Record:
        if self.during == "poll":
            self._rebalance()
            return _Record(0, 0)
        return _Record(0, 5)

    def resume(self, partitions: list[Any]) -> None:
        self.resumed += partitions


@pytest.mark.parametrize(
    ("during", "offsets"),
    [("poll", [0, 1, 2]), ("consume", [0, 1, 2])],
    ids=["rebalance-before-the-first-message", "rebalance-after-the-first-message"],
)
async def test_fetch_drops_only_a_first_message_that_a_rebalance_made_stale(
    during: str, offsets: list[int]
) -> None:
    """Issue 14, defect 7: a rebalance served while ``poll()`` waited for the first
    message made the listener drop that message, although it was the first one of the
    new assignment (offset 0 of a new group): it was never processed, and the offsets
    after it were committed. Only a rebalance after it (during the ``consume()`` that
    takes the rest of the batch) makes it stale."""
    import asyncio

    pytest.importorskip("confluent_kafka")
    kafka = make_listener("kafka://h:9092/frames?group=g")
    kafka._loop = asyncio.get_running_loop()
    consumer = _Rebalancing(kafka, during)
    kafka._consumer = consumer
    batch = await asyncio.to_thread(kafka._fetch, None)
    assert [m.offset() for m in batch] == offsets
    assert [(p.topic, p.partition) for p in consumer.resumed] == [("frames", 0)]
