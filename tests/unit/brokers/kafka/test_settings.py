"""The Kafka connector's options (settings.py) and the factories that read them: the URL,
the URL query and the YAML block, librdkafka's settings that pass through, what is
refused, and secrets kept out of text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from arroyo.brokers import open_listener, open_publisher, parse_url
from arroyo.brokers.kafka import KafkaListener, KafkaPublisher
from arroyo.brokers.kafka.settings import COMMON_SETTINGS
from arroyo.errors import ConfigError
from tests.unit.brokers.kafka.endpoints import make_listener, make_publisher

ck = pytest.importorskip("confluent_kafka")


def test_listener_defaults_commit_manually_from_the_earliest_offset_read_committed() -> None:
    lst = make_listener("kafka://h:9092/frames?group=workers")
    assert lst.topics == ["frames"]
    assert lst.group == "workers"
    assert lst.config["group.id"] == "workers"
    assert lst.config["enable.auto.commit"] == "false"
    assert lst.config["auto.offset.reset"] == "earliest"
    assert lst.config["isolation.level"] == "read_committed"
    assert lst.config["bootstrap.servers"] == "h:9092"
    partitions = lst.partitions
    assert (partitions.commit_interval, partitions.commit_every) == (1.0, 1000)
    assert lst.batch_size == 1000


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
    assert lst.partitions.commit_every == 50
    assert lst.partitions.commit_interval == 0.25
    assert lst.config["fetch.wait.max.ms"] == "10"
    assert lst.config["security.protocol"] == "SSL"
    assert lst.config["ssl.ca.location"] == ca
    assert lst.config["session.timeout.ms"] == "6000"
    assert lst.config["enable.ssl.certificate.verification"] == "true"


def test_several_bootstrap_servers_in_the_url() -> None:
    lst = make_listener("kafka://h1:9092,h2:9093,h3/frames?group=g")
    assert lst.config["bootstrap.servers"] == "h1:9092,h2:9093,h3:9092"
    assert lst.servers == "h1:9092,h2:9093,h3:9092"
    pub = make_publisher("kafka://[::1]:9092,[::2]/t")
    assert pub.config["bootstrap.servers"] == "[::1]:9092,[::2]:9092"


def test_the_producer_waits_for_every_in_sync_replica_idempotently() -> None:
    pub = make_publisher("kafka://h:9092/t")
    assert (pub.config["acks"], pub.config["enable.idempotence"]) == ("all", "true")
    with pytest.raises(ConfigError, match="`acks` must be set to `all`"):
        make_publisher("kafka://h:9092/t", **{"request.required.acks": "1"})
    relaxed = make_publisher(
        "kafka://h:9092/t", **{"request.required.acks": "1", "enable.idempotence": False}
    )
    assert relaxed.config["request.required.acks"] == "1"


def test_bootstrap_servers_setting_overrides_the_url_address() -> None:
    pub = make_publisher("kafka://h:9092/t", **{"bootstrap.servers": "a:1,b:2"})
    assert pub.config["bootstrap.servers"] == "a:1,b:2"


@pytest.mark.parametrize(
    ("url", "options", "expected"),
    [
        (
            "kafka://h:9092/t?group=g",
            {"comit_every": 5},
            "unknown kafka option(s) 'comit_every' (did you mean 'commit_every'?)",
        ),
        ("kafka://h:9092/t", {}, "needs a consumer group"),
        ("kafka://h:9092/?group=g", {}, "needs a topic"),
        ("kafka://h:9092/t?group=g", {"group.id": "x"}, "not 'group.id'"),
        ("kafka://h:9092/t?group=g", {"enable.auto.commit": True}, "must stay false"),
        (
            "kafka://h:9092/t?group=g&batch_size=many",
            {},
            "kafka option 'batch_size': input should be a valid integer",
        ),
        (
            "kafka://h:9092/t?group=g",
            {"commit_every": -1},
            "kafka option 'commit_every': input should be greater than or equal to 0, got -1",
        ),
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
    with pytest.raises(ConfigError, match="unknown kafka option"):
        make_publisher("kafka://h:9092/a", group="g")


def test_a_publisher_format_comes_from_the_url_or_yaml_with_its_options() -> None:
    from arroyo.formats.bluesky_kafka import BlueskyKafkaFormat
    from arroyo.formats.ess import EssFormat

    assert make_publisher("kafka://h:9092/t").formatted is None
    assert make_publisher("kafka://h:9092/t?format=arroyo").formatted is None
    by_url = make_publisher("kafka://h:9092/t?format=bluesky-kafka").formatted
    assert by_url is not None and isinstance(by_url.format, BlueskyKafkaFormat)
    by_yaml = make_publisher(
        "kafka://h:9092/t", format="ess", format_options={"source_name": "det-1"}
    ).formatted
    assert by_yaml is not None and isinstance(by_yaml.format, EssFormat)
    assert by_yaml.format.source_name == "det-1"
    assert by_yaml.name == "ess"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            {"format": "esss"},
            "kafka://h:9092/t: kafka option 'format': unknown format 'esss' (did you mean "
            "'ess'?); known: arroyo, bluesky-kafka, ess",
        ),
        (
            {"format": "ess", "format_options": {"sorce_name": "x"}},
            "kafka://h:9092/t: kafka option 'format': format 'ess' does not accept these "
            "options: EssFormat.__init__() got an unexpected keyword argument 'sorce_name'",
        ),
        (
            {"format_options": {"source_name": "x"}},
            "kafka://h:9092/t: kafka option 'format_options' needs a 'format'",
        ),
        (
            {"format_options": "x"},
            "kafka://h:9092/t: kafka option 'format_options': input should be a valid",
        ),
    ],
    ids=["unknown", "bad option", "options without format", "options not a map"],
)
def test_a_bad_publisher_format_is_one_line_naming_the_option(
    options: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        make_publisher("kafka://h:9092/t", **options)
    assert str(caught.value).startswith(expected), str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_bad_format_in_yaml_fails_the_build_naming_file_block_and_option() -> None:
    from arroyo.build import build
    from arroyo.config import parse_config

    config = parse_config(
        "blocks:\n"
        "  - name: feed\n"
        "    listener: memory://in\n"
        "    publishers:\n"
        "      - memory://copy\n"
        "      - {url: 'kafka://h:9092/t', format: ess, format_options: {colour: red}}\n",
        "pipeline.yaml",
    )
    with pytest.raises(ConfigError) as caught:
        build(config, "pipeline.yaml")
    assert str(caught.value).startswith(
        "pipeline.yaml: blocks[0] (feed).publishers[1]: kafka://h:9092/t: kafka option "
        "'format': format 'ess' does not accept these options"
    ), str(caught.value)


def test_factories_are_reached_through_the_scheme() -> None:
    assert isinstance(open_listener("kafka://h:9092/t?group=g"), KafkaListener)
    assert isinstance(open_publisher("kafka://h:9092/t"), KafkaPublisher)


def test_secrets_are_scrubbed_from_text_and_names() -> None:
    lst = make_listener(
        "kafka://h:9092/t?group=g",
        **{"sasl.password": "hunter2-secret", "ssl.key.password": "k3y-pass", "sasl.username": "u"},
    )
    text = 'Invalid value "hunter2-secret" for "sasl.password"; key k3y-pass; user u'
    assert lst.hide(text) == 'Invalid value "***" for "sasl.password"; key ***; user u'
    assert "hunter2" not in lst.name
    url = parse_url("kafka://h:9092/t?group=g&sasl.password=hunter2-secret")
    assert "hunter2" not in str(url)
    assert "hunter2" not in make_listener(str(url.raw)).name


def test_the_tls_options_stand_for_librdkafkas_and_imply_ssl(tmp_path: Path) -> None:
    ca = self_signed_ca(tmp_path)
    pub = make_publisher(f"kafka://h:9092/t?ssl_ca={ca}", ssl_verify=False)
    assert pub.config["ssl.ca.location"] == ca
    assert pub.config["security.protocol"] == "SSL"
    assert pub.config["enable.ssl.certificate.verification"] == "false"
    sasl = {"sasl.mechanism": "PLAIN", "sasl.username": "u", "sasl.password": "p4ss"}
    explicit = make_publisher(
        "kafka://h:9092/t", ssl_ca=ca, **{"security.protocol": "SASL_SSL", **sasl}
    )
    assert explicit.config["security.protocol"] == "SASL_SSL"
    plain = make_publisher("kafka://h:9092/t")
    assert "security.protocol" not in plain.config
    assert "enable.ssl.certificate.verification" not in plain.config


def test_librdkafka_checks_the_settings_that_pass_through() -> None:
    with pytest.raises(ConfigError, match=r"no setting 'linger\.msec' \(did you mean 'linger\.ms'"):
        make_publisher("kafka://h:9092/t", **{"linger.msec": 5})
    with pytest.raises(ConfigError, match=r"ssl\.ca\.location: no such file: /nowhere\.pem"):
        make_listener("kafka://h:9092/t?group=g", ssl_ca="/nowhere.pem")


def test_librdkafka_knows_every_setting_offered_as_a_correction() -> None:
    unknown = []
    for key in COMMON_SETTINGS:
        try:
            ck.Producer({key: "1", "logger": _Quiet()}).close()
        except ck.KafkaException as exc:
            if "No such configuration property" in str(exc):
                unknown.append(key)
    assert unknown == []


class _Quiet:
    def log(self, *args: object) -> None:
        pass
