"""Building blocks from a config (arroyo/build.py): operators imported, endpoints opened
with their codecs and schemas, and every mistake found there one line naming the file,
the block and the key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from arroyo.brokers.file import FilePublisher
from arroyo.brokers.memory import MemoryListener
from arroyo.build import build, build_file
from arroyo.config import parse_config
from arroyo.errors import ConfigError
from arroyo.operators import Integrate
from arroyo.runtime import FunctionOperator, Passthrough
from arroyo.runtime.parser import AvroParser
from tests.unit.config_files import refused, write


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
    [publisher] = block.publishers
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


def test_duplicate_block_names_are_refused() -> None:
    config = parse_config(
        "blocks:\n  - {name: a, listener: 'memory://x'}\n  - {name: a, listener: 'memory://y'}\n"
    )

    with pytest.raises(ConfigError, match="repeated: \\['a'\\]"):
        build(config)


def test_a_misspelled_librdkafka_key_is_refused_before_anything_starts(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        blocks:
          - name: workers
            listener:
              url: kafka://127.0.0.1:9092/frames?group=g
              fetch.max.byte: 1000000
        """,
    )
    message = refused(path)
    assert message.startswith(f"{path}: blocks[0] (workers).listener: kafka://127.0.0.1:9092")
    assert "librdkafka has no setting 'fetch.max.byte' (did you mean 'fetch.max.bytes'?)" in (
        message
    )


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"linger.ms": "soon"}, "setting 'linger.ms' (librdkafka's 'queue.buffering.max.ms')"),
        ({"compression.type": "zip"}, "setting 'compression.type'"),
        ({"message.max.bytes": 2_000_000_000}, "setting 'message.max.bytes'"),
        ({"ssl.ca.location": "/nowhere/ca.pem"}, "ssl.ca.location: no such file: /nowhere/ca.pem"),
        ({"connect_timeout": 0}, "kafka option 'connect_timeout': input should be greater than 0"),
    ],
)
def test_bad_librdkafka_values_name_the_setting(
    tmp_path: Path, settings: dict[str, object], expected: str
) -> None:
    import yaml

    block = {
        "name": "archive",
        "listener": "memory://in",
        "publishers": [{"url": "kafka://127.0.0.1:9092/results", **settings}],
    }
    path = write(tmp_path, yaml.safe_dump({"blocks": [block]}))
    message = refused(path)
    assert message.startswith(f"{path}: blocks[0] (archive).publishers[0]: kafka://"), message
    assert expected in message


def test_a_consumer_setting_on_a_publisher_is_a_warning_naming_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(
        tmp_path,
        """
        blocks:
          - name: w
            listener: memory://in
            publishers: [{url: "kafka://127.0.0.1:9092/results", fetch.max.bytes: 1000000}]
        """,
    )
    build_file(path)
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "kafka://127.0.0.1:9092/results" in warning
    assert "fetch.max.bytes is a consumer property" in warning


@pytest.mark.parametrize(
    ("module", "source", "operator", "detail"),
    [
        (
            "broken_ops_a",
            "def integrate(message)\n    return message\n",
            "broken_ops_a:integrate",
            "broken_ops_a.py, line 1: expected ':'",
        ),
        (
            "broken_ops_b",
            "raise RuntimeError('no detector')\n",
            "broken_ops_b:Op",
            "raised RuntimeError: no detector",
        ),
    ],
    ids=["syntax-error", "raises-on-import"],
)
def test_an_operator_module_that_cannot_be_imported_is_one_line(
    tmp_path: Path, module: str, source: str, operator: str, detail: str
) -> None:
    (tmp_path / f"{module}.py").write_text(source)
    path = write(
        tmp_path,
        f"""
        blocks:
          - name: w
            listener: memory://in
            operator: {operator}
        """,
    )
    message = refused(path)
    assert message.startswith(f"{path}: blocks[0] (w).operator: cannot import {operator!r}")
    assert detail in message


def test_a_malformed_schema_file_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "metadata.avsc").write_text('{"type": "record", "name": "M", "fields": [\n')
    path = write(
        tmp_path,
        """
        blocks:
          - name: w
            listener: memory://in
            publishers: [{url: "memory://out", schema: metadata.avsc}]
        """,
    )
    message = refused(path)
    assert message.startswith(f"{path}: blocks[0] (w).publishers[0]: {tmp_path}/metadata.avsc")
    assert "cannot be read as an Avro schema" in message
    assert "line 2 column 1" in message


def test_frame_accounting_is_on_for_instrument_formats_and_asked_for_arroyo(
    tmp_path: Path,
) -> None:
    config = tmp_path / "frames.yaml"
    config.write_text(
        textwrap.dedent(
            """
            blocks:
              - name: detector
                listener: zmq+pull://127.0.0.1:5555?parser=json-frame
              - name: chained
                listener: zmq+pull://127.0.0.1:5556
              - name: counted
                listener: zmq+pull://127.0.0.1:5557
                frame_accounting: true
            """
        )
    )
    detector, chained, counted = (b.block._processor.frames for b in build_file(config))
    assert detector is not None and chained is None and counted is not None


def test_check_lazy_gives_the_listener_a_lazy_codec_and_needs_arroyo_messages(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        """
        blocks:
          - name: forward
            listener: memory://in
            publishers: [memory://out]
            check: lazy
          - name: checked
            listener: memory://in2
        """,
    )
    lazy, full = (b.block.listener.parser for b in build_file(path))
    assert isinstance(lazy, AvroParser) and lazy.codec.lazy
    assert isinstance(full, AvroParser) and not full.codec.lazy
    path = write(
        tmp_path,
        """
        blocks:
          - name: detector
            listener: zmq+pull://127.0.0.1:5555?parser=json-frame
            check: lazy
        """,
    )
    assert refused(path).endswith(
        "blocks[0] (detector).listener: check: lazy reads Arroyo's own messages; "
        "parser 'json-frame' makes its own (use check: full)"
    )
