"""Kafka topics (admin.py), without a broker: the size limit of a publisher's topic,
checked and a new topic made to fit, with a fake admin client."""

from __future__ import annotations

import pytest

from arroyo.brokers.kafka.admin import fit_topic

ck = pytest.importorskip("confluent_kafka")
kafka_admin = pytest.importorskip("confluent_kafka.admin")


class _Entry:
    def __init__(self, value: str) -> None:
        self.value = value


class _Done:
    def __init__(self, value: object = None, error: int | None = None) -> None:
        self.value, self.error = value, error

    def result(self, timeout: float | None = None) -> object:
        if self.error is not None:
            raise ck.KafkaException(ck.KafkaError(self.error))
        return self.value


class FakeAdmin:
    """The admin calls fit_topic makes, answered from a dict of topic limits."""

    def __init__(
        self,
        topics: dict[str, int],
        broker: dict[str, str],
        create_error: int | None = None,
    ) -> None:
        self.topics, self.broker, self.create_error = topics, broker, create_error
        self.created: list[object] = []

    def __call__(self, config: dict[str, object]) -> FakeAdmin:
        assert "enable.idempotence" not in config
        return self

    def describe_configs(self, resources: list[object], request_timeout: float) -> object:
        [resource] = resources
        kind, name = resource.restype, resource.name  # type: ignore[attr-defined]
        if kind == kafka_admin.ResourceType.BROKER:
            return {resource: _Done({k: _Entry(v) for k, v in self.broker.items()})}
        if name not in self.topics:
            return {resource: _Done(error=ck.KafkaError.UNKNOWN_TOPIC_OR_PART)}
        return {resource: _Done({"max.message.bytes": _Entry(str(self.topics[name]))})}

    def list_topics(self, timeout: float) -> object:
        return type("Metadata", (), {"brokers": {1: None}})()

    def create_topics(self, new: list[object], request_timeout: float) -> object:
        [topic] = new
        self.created.append(topic)
        return {topic.topic: _Done(error=self.create_error)}  # type: ignore[attr-defined]


LIMIT = 64 << 20
STOCK = {"message.max.bytes": "1048588", "auto.create.topics.enable": "true"}


def fit(admin: FakeAdmin, monkeypatch: pytest.MonkeyPatch, topic: str = "frames") -> None:
    monkeypatch.setattr(kafka_admin, "AdminClient", admin)
    config = {"bootstrap.servers": "h:9092", "enable.idempotence": "true"}
    fit_topic("kafka://h:9092/frames", config, topic, LIMIT, 5, str)


@pytest.mark.parametrize(
    ("admin", "expected", "created"),
    [
        (FakeAdmin({"frames": 1048588}, STOCK), "takes messages up to 1048588 bytes", False),
        (FakeAdmin({"frames": LIMIT}, STOCK), None, False),
        (FakeAdmin({}, {**STOCK, "message.max.bytes": str(LIMIT)}), None, False),
        (
            FakeAdmin({}, {**STOCK, "auto.create.topics.enable": "false"}),
            "does not exist and the broker does not create topics",
            False,
        ),
        (FakeAdmin({}, STOCK), None, True),
        (
            FakeAdmin({}, STOCK, create_error=ck.KafkaError.TOPIC_AUTHORIZATION_FAILED),
            "or raise the broker's message.max.bytes",
            True,
        ),
    ],
    ids=["smaller", "fits", "default-fits", "no-auto-create", "created", "create-refused"],
)
def test_the_topic_limit_is_checked_and_a_new_topic_made_to_fit(
    admin: FakeAdmin,
    expected: str | None,
    created: bool,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fit(admin, monkeypatch)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    if expected is None:
        assert warnings == []
    else:
        [warning] = warnings
        assert warning.startswith("kafka://h:9092/frames: ") and expected in warning
    assert bool(admin.created) == created
    for new in admin.created:
        assert new.config == {"max.message.bytes": str(LIMIT)}  # type: ignore[attr-defined]
        assert (new.num_partitions, new.replication_factor) == (-1, -1)  # type: ignore[attr-defined]
