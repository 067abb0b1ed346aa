"""The harness itself: a missing broker fails a test under CI=true and skips it elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = Path(__file__).parents[1] / "conftest.py"


@pytest.mark.parametrize("broker", ["kafka", "redis", "rabbitmq"])
def test_missing_broker_is_named(broker: str, pytester: pytest.Pytester) -> None:
    """Without the broker, a test needing it fails under CI=true and skips elsewhere, naming it."""
    fixture = {"kafka": "kafka_bootstrap", "redis": "redis_address", "rabbitmq": "amqp_url"}[broker]
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(f"def test_needs_it({fixture}):\n    pass\n")
    env = {
        "ARROYO_KAFKA": "127.0.0.1:1",
        "ARROYO_REDIS": "127.0.0.1:1",
        "ARROYO_AMQP": "amqp://127.0.0.1:1/",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
        mp.setenv("CI", "true")
        failed = pytester.runpytest_subprocess("-p", "no:cacheprovider")
        mp.setenv("CI", "false")
        skipped = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    failed.assert_outcomes(errors=1)
    failed.stdout.fnmatch_lines([f"*{broker} is not available*"])
    skipped.assert_outcomes(skipped=1)
    skipped.stdout.fnmatch_lines([f"*{broker} is not available*"])
