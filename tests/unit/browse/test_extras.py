"""arroyo.browse imports without any broker client; a missing one names the extra."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

BLOCK = """
import importlib.abc, sys
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {"confluent_kafka", "redis", "aio_pika", "aiormq", "zmq"}:
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, Missing())
"""


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("url", "extra"),
    [
        ("kafka://h:9092/t", "kafka"),
        ("redis://h:6379/s", "redis"),
        ("redis+pubsub://h:6379/c", "redis"),
        ("amqp://h:5672/?queue=q", "rabbitmq"),
        ("zmq+sub://h:5555", "zmq"),
    ],
)
def test_a_missing_client_names_the_extra_to_install(url: str, extra: str) -> None:
    result = run(
        f"""
        import arroyo.browse, arroyo.browse.show, arroyo.cli.tail
        from arroyo.errors import MissingDependencyError
        try:
            arroyo.browse.open_browser({url!r})
        except MissingDependencyError as exc:
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.strip().splitlines()
    assert f"pip install 'arroyo-streams[{extra}]'" in line
