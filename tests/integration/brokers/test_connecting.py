"""A wrong address fails the start in one line, within ``connect_timeout``, on every broker.

Each case runs the command a user types (``arroyo tail``, ``arroyo bridge``, ``arroyo
run``) as a subprocess against the real brokers: a port nothing listens on, and the TLS
port of each broker with a plaintext client. The command must exit non-zero with one
line on stderr naming the URL (password hidden) and the cause, and end within the
timeout plus a margin for starting Python (a command that retried for ever would hit
the subprocess deadline).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from arroyo.testing import free_port

ROOT = Path(__file__).resolve().parents[3]
ARROYO = [sys.executable, "-m", "arroyo"]
TIMEOUT = 2  # connect_timeout given to the connectors, seconds
MARGIN = 60  # seconds for Python to start and stop on a busy machine
SECRET = "s3cret-pw"


def tls_address(variable: str) -> str:
    """``host:port`` of a TLS port of the test brokers (from ``compose/brokers.sh up``)."""
    value = os.environ.get(variable, "")
    if value:
        return value.split("@")[-1].strip("/")
    message = f"${variable} is not set (start the brokers with compose/brokers.sh up)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def one_line_failure(*args: str, within: float = TIMEOUT) -> str:
    """Run ``arroyo ARGS``; check it fails (within the connect timeout ``within`` plus a
    margin) with exactly one line on stderr; that line."""
    done = subprocess.run(
        [*ARROYO, *args], cwd=ROOT, capture_output=True, text=True, timeout=within + MARGIN
    )
    assert done.returncode != 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert SECRET not in done.stderr
    return lines[0]


def run_config(tmp_path: Path, listener: str) -> str:
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            blocks:
              - name: intake
                listener: {{url: "{listener}", connect_timeout: {TIMEOUT}}}
                publishers: [memory://out]
            """
        )
    )
    return one_line_failure("run", str(config))


@pytest.mark.parametrize(
    ("destination", "shown"),
    [
        ("kafka://127.0.0.1:{port}/frames", "kafka://127.0.0.1:{port}/frames"),
        ("redis://:" + SECRET + "@127.0.0.1:{port}/frames", "redis://127.0.0.1:{port}/frames"),
        (
            "amqp://guest:" + SECRET + "@127.0.0.1:{port}/?queue=frames",
            "amqp://127.0.0.1:{port}/?queue=frames",
        ),
    ],
    ids=["kafka", "redis", "rabbitmq"],
)
def test_a_publisher_on_a_port_nothing_listens_on(destination: str, shown: str) -> None:
    port = free_port()
    url = destination.format(port=port)
    sep = "&" if "?" in url else "?"
    line = one_line_failure("bridge", "memory://in", f"{url}{sep}connect_timeout={TIMEOUT}")
    assert shown.format(port=port) in line
    assert f"within {TIMEOUT} s: connection refused" in line


def test_tail_of_a_kafka_port_nothing_listens_on_gives_up(kafka_bootstrap: str) -> None:
    """The report's own command, with the default connect_timeout (10 s): it used to
    retry for ever, saying "1/1 brokers are down"."""
    port = free_port()
    line = one_line_failure("tail", f"kafka://127.0.0.1:{port}/frames", within=10)
    assert f"kafka://127.0.0.1:{port}/frames: cannot reach the Kafka cluster at " in line
    assert f"127.0.0.1:{port} within 10 s: connection refused" in line
    assert "brokers are down" not in line


def test_a_plaintext_kafka_listener_on_the_tls_port_is_told_to_use_ssl(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    address = tls_address("ARROYO_KAFKA_TLS")
    line = run_config(tmp_path, f"kafka://{address}/frames?group=g")
    assert f"kafka://{address}/frames?group=g" in line
    assert "closed the connection before answering" in line
    assert "set security.protocol=SSL" in line


def test_a_tls_kafka_listener_on_the_plaintext_port_is_told_it_is_not_tls(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    line = run_config(tmp_path, f"kafka://{kafka_bootstrap}/frames?group=g&security.protocol=SSL")
    assert "the port does not speak TLS" in line
    assert "remove security.protocol=SSL" in line


def test_a_plaintext_redis_listener_on_the_tls_port_is_told_to_use_rediss(
    tmp_path: Path, redis_address: str
) -> None:
    address = tls_address("ARROYO_REDIS_TLS")
    line = run_config(tmp_path, f"redis://{address}/frames")
    assert f"redis://{address}/frames" in line
    assert "use rediss://" in line


def test_a_plaintext_amqp_listener_on_the_tls_port_is_told_to_use_amqps(
    tmp_path: Path, amqp_url: str
) -> None:
    address = tls_address("ARROYO_AMQPS")
    line = run_config(tmp_path, f"amqp://guest:{SECRET}@{address}/?queue=frames")
    assert f"amqp://{address}/?queue=frames" in line
    assert "use amqps://" in line
