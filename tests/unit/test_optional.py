"""The core works without any broker client. (A missing client names the extra to install,
on every broker: tests/contract/test_extras.py.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCK_CLIENTS = """
import importlib.abc, sys
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {BLOCKED}:
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, Missing())
"""
CLIENTS = {
    "confluent_kafka",
    "redis",
    "aio_pika",
    "aiormq",
    "zmq",
    "msgpack",
    "numpy",
    "opentelemetry",
}


def run(code: str) -> subprocess.CompletedProcess[str]:
    prelude = BLOCK_CLIENTS.replace("{BLOCKED}", repr(CLIENTS))
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_core_imports_and_works_without_any_broker_client() -> None:
    result = run(
        """
        import arroyo, arroyo.runtime, arroyo.config, arroyo.build, arroyo.cli
        import arroyo.brokers.memory
        import arroyo.brokers.file
        from arroyo import Start, decode, encode
        assert decode(encode(Start({"a": 1}))).data == {"a": 1}
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_simulate_without_pyzmq_says_what_to_install_in_one_line() -> None:
    result = run(
        """
        import sys
        from arroyo.cli import main
        sys.argv = ["arroyo", "simulate", "zmq+push://127.0.0.1:5555?bind=true", "--frames", "1"]
        main()
        """
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "pip install 'arroyo-streams[zmq]'" in lines[0]
