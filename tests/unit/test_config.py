"""Pipeline configs (arroyo/config.py): YAML validated completely, before anything starts,
with pointed errors (the blocks they build: test_build.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from arroyo.build import build_file
from arroyo.config import expand
from arroyo.errors import ConfigError
from tests.unit.config_files import refused, write


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
            r"blocks\[0\] \(w\).listener: memory://in\?colour=blue: "
            r"unknown memory option\(s\) 'colour'",
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
            r"pipeline.yaml: blocks\[0\] \(w\).publishers\[0\]: environment variable "
            r"\$\{ARROYO_TEST_UNSET_VARIABLE\} is not set",
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


# -- errors that used to escape the up-front check (issue 13, defect 6) ------------------


def test_an_unset_variable_names_the_file_block_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAFKA_HOST", raising=False)
    path = write(
        tmp_path,
        """
        blocks:
          - name: workers
            listener: {url: "kafka://${KAFKA_HOST}:9092/frames?group=g"}
        """,
    )
    message = refused(path)
    assert message.startswith(
        f"{path}: blocks[0] (workers).listener.url: environment variable ${{KAFKA_HOST}} is not set"
    )
    assert "${KAFKA_HOST:-value}" in message


@pytest.mark.parametrize(
    ("line", "url", "where"),
    [
        (
            "    publishers: [redis://127.0.0.1:6379/results?maxlen=10, memory://x]",
            "redis://127.0.0.1:6379/results?maxlen=10",
            "line 4, column 48",
        ),
        (
            "    listener: {url: kafka://127.0.0.1:9092/frames?group=g}",
            "kafka://127.0.0.1:9092/frames?group=g",
            "line 3, column 50",
        ),
    ],
)
def test_an_unquoted_question_mark_in_a_flow_list_says_to_quote_the_url(
    tmp_path: Path, line: str, url: str, where: str
) -> None:
    path = tmp_path / "pipeline.yaml"
    if "publishers" in line:
        path.write_text(f"blocks:\n  - name: w\n    listener: memory://in\n{line}\n")
    else:
        path.write_text(f"blocks:\n  - name: w\n{line}\n")
    message = refused(path)
    assert message.startswith(f"{path}: not valid YAML at {where}: "), message
    assert f'write the URL in quotes, as in "{url}"' in message
    assert "<unicode string>" not in message
