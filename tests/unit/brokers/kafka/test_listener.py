"""The Kafka listener's own logic, without a broker (a fake consumer)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.brokers.kafka.endpoints import make_listener

ck = pytest.importorskip("confluent_kafka")


def test_a_revocation_that_fails_logs_what_failed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The log line names the error even when its text is empty (a TimeoutError of the
    revocation's wait said only "handling the revocation failed: ")."""
    kafka = make_listener("kafka://h:9092/frames?group=g")

    def times_out(coroutine: Any, timeout: float) -> None:
        coroutine.close()
        raise TimeoutError

    monkeypatch.setattr(kafka, "_run_on_loop", times_out)
    kafka.consumer._on_revoke(None, [ck.TopicPartition("frames", 0)])
    assert "handling the revocation failed: TimeoutError()" in caplog.text
