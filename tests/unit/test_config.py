"""Pipeline configs: validated completely, before anything starts, with pointed errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from arroyo.brokers.file import FilePublisher
from arroyo.brokers.memory import MemoryListener
from arroyo.config import build_file, expand, parse_config
from arroyo.errors import ConfigError
from arroyo.operators import Integrate
from arroyo.runtime import FunctionOperator, Passthrough


def write(tmp_path: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_valid_config_builds_blocks_without_connecting(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        blocks:
          - name: archive
            listener: memory://frames?group=archivers
            operator: arroyo.operators:Integrate
            publishers:
              - url: file:///tmp/arroyo-test/out.avro
                compression: deflate
            dead_letter: memory://frames.dlq
            concurrency: 3
            retry: {attempts: 5, initial: 0.5}
        """,
    )
    [built] = build_file(path)
    block = built.block
    assert block.name == "archive"
    assert isinstance(block.listener, MemoryListener)
    assert isinstance(block.operator, Integrate)
    [publisher] = block.operator.publishers
    assert isinstance(publisher, FilePublisher)
    assert publisher.compression == "deflate"
    assert block.concurrency == 3
    assert block.retry.attempts == 5
    assert block.publish_retry.attempts is None  # publishers retry until the destination is back


def test_operator_next_to_the_config_is_importable(tmp_path: Path) -> None:
    (tmp_path / "myops.py").write_text(
        "from arroyo.runtime import Operator\n"
        "class Scale(Operator):\n"
        "    def __init__(self, factor: float) -> None:\n"
        "        self.factor = factor\n"
        "    async def process(self, message):\n"
        "        return message\n"
        "def plain(message):\n"
        "    return message\n"
    )
    path = write(
        tmp_path,
        """
        blocks:
          - name: a
            listener: memory://in
            operator: {class: "myops:Scale", kwargs: {factor: 2.5}, timeout: 7.5}
          - name: b
            listener: memory://in2
            operator: {class: "myops:plain", executor: process}
          - name: c
            listener: memory://in3
            operator: passthrough
        """,
    )
    a, b, c = (built.block for built in build_file(path))
    assert a.operator.factor == 2.5  # type: ignore[attr-defined]
    assert (a.operator_timeout, b.operator_timeout) == (7.5, None)
    assert isinstance(b.operator, FunctionOperator)
    assert b.operator.executor == "process"
    assert isinstance(c.operator, Passthrough)


@pytest.mark.parametrize(
    ("yaml", "expected"),
    [
        (
            """
            blocks:
              - name: w
                listener: memory://in
                concurency: 4
            """,
            r"pipeline.yaml: blocks\[0\] \(w\).concurency: unknown key 'concurency' "
            r"\(did you mean 'concurrency'\?\)",
        ),
        (
            """
            blocks:
              - name: w
                listener: kafak://127.0.0.1:9092/frames
            """,
            r"pipeline.yaml: blocks\[0\] \(w\).listener: unknown URL scheme 'kafak'",
        ),
        (
            """
            blocks:
              - name: w
                listener: memory://in
                operator: no_such_module_xyz:Op
            """,
            r"blocks\[0\] \(w\).operator: cannot import 'no_such_module_xyz:Op'",
        ),
        (
            """
            blocks:
              - name: w
                listener: memory://in
                operator: {class: "arroyo.operators:Integrate", kwargs: {gain: 2}}
            """,
            r"blocks\[0\] \(w\).operator: arroyo.operators:Integrate does not accept these "
            r"kwargs: got an unexpected keyword argument 'gain'",
        ),
        (
            """
            blocks:
              - name: w
                listener: memory://in?colour=blue
            """,
            r"blocks\[0\] \(w\).listener: memory://in\?colour=blue: unknown option\(s\) 'colour'",
        ),
        (
            """
            blocks:
              - name: w
                listener: memory://in
                publishers: [file:///tmp/x.avro]
                concurrency: zero
            """,
            r"blocks\[0\] \(w\).concurrency: Input should be a valid integer",
        ),
        (
            """
            blocks:
              - name: w
                listener: memory://in
                publishers: ["${ARROYO_TEST_UNSET_VARIABLE}"]
            """,
            r"blocks\[0\].publishers\[0\]: environment variable \$\{ARROYO_TEST_UNSET_VARIABLE\}",
        ),
        ("blocks: []", r"blocks: List should have at least 1 item"),
        ("blocks: [", r"pipeline.yaml: not valid YAML"),
    ],
)
def test_mistakes_fail_before_anything_starts_and_point_at_the_key(
    tmp_path: Path, yaml: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        build_file(write(tmp_path, yaml))


def test_exactly_once_is_refused_where_the_broker_has_no_transactions(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        blocks:
          - name: w
            listener: memory://in
            publishers: [memory://out]
            guarantee: exactly-once
        """,
    )
    with pytest.raises(ConfigError, match=r"\(w\).guarantee: exactly-once is not available"):
        build_file(path)


def test_environment_expansion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARROYO_TEST_HOST", "10.0.0.7")
    monkeypatch.delenv("ARROYO_TEST_PORT", raising=False)
    value = expand({"url": "kafka://${ARROYO_TEST_HOST}:${ARROYO_TEST_PORT:-9092}/t", "n": 3})
    assert value == {"url": "kafka://10.0.0.7:9092/t", "n": 3}


def test_passwords_never_appear_in_config_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        blocks:
          - name: w
            listener: amqpx://user:s3cret@host:5672/?queue=q
        """,
    )
    with pytest.raises(ConfigError) as info:
        build_file(path)
    assert "s3cret" not in str(info.value)
    assert "user:***@host" in str(info.value)


def test_duplicate_block_names_are_refused() -> None:
    config = parse_config(
        "blocks:\n  - {name: a, listener: 'memory://x'}\n  - {name: a, listener: 'memory://y'}\n"
    )
    from arroyo.config import build

    with pytest.raises(ConfigError, match="repeated: \\['a'\\]"):
        build(config)
