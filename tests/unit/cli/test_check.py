"""``arroyo check``: everything ``run`` checks, without running or connecting."""

from __future__ import annotations

import textwrap
from pathlib import Path

from typer.testing import CliRunner

from arroyo.cli import app

runner = CliRunner()


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_check_prints_each_block_and_starts_nothing(tmp_path: Path) -> None:
    config = write(
        tmp_path / "pipeline.yaml",
        f"""
        blocks:
          - name: integrate
            listener: file://{tmp_path}/in.avro
            operator: arroyo.operators:Integrate
            publishers: [file://{tmp_path}/out/results.avro, "memory://copy"]
            dead_letter: "amqp://guest:secret@127.0.0.1:5672/?queue=dead"
          - name: archive
            listener: zmq+pull://127.0.0.1:5555?parser=json-frame
        """,
    )
    result = runner.invoke(app, ["check", str(config)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"integrate: file://{tmp_path}/in.avro -> arroyo.operators:Integrate -> "
        f"file://{tmp_path}/out/results.avro, memory://copy; "
        "dead letter amqp://127.0.0.1:5672/?queue=dead",
        "archive: zmq+pull://127.0.0.1:5555 -> passthrough -> (no publishers)",
        f"{config}: 2 block(s), ready to run",
    ]
    assert not (tmp_path / "out").exists()  # nothing started
    assert "secret" not in result.output


def test_check_refuses_what_run_refuses(tmp_path: Path) -> None:
    config = write(
        tmp_path / "pipeline.yaml",
        """
        blocks:
          - name: w
            listener: memory://in
            operator: nope:Op
        """,
    )
    checked = runner.invoke(app, ["check", str(config)])
    ran = runner.invoke(app, ["run", str(config)])
    assert checked.exit_code == ran.exit_code == 2
    assert checked.output == ran.output
    assert "blocks[0] (w).operator: cannot import 'nope:Op'" in checked.output


def test_connect_says_per_endpoint_what_answered(tmp_path: Path) -> None:
    (tmp_path / "in.avro").write_bytes(b"")
    config = write(
        tmp_path / "pipeline.yaml",
        f"""
        blocks:
          - name: replay
            listener: file://{tmp_path}/in.avro
            publishers: [file://{tmp_path}/out.avro]
          - name: missing
            listener: file://{tmp_path}/nope.avro
            publishers: ["zmq+push://127.0.0.1:5555"]
            dead_letter: memory://dead
        """,
    )
    result = runner.invoke(app, ["check", str(config), "--connect"])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()[3:]
    assert lines == [
        f"  ok      replay.listener        file://{tmp_path}/in.avro: the file is there",
        f"  ok      replay.publishers[0]   file://{tmp_path}/out.avro: {tmp_path} exists",
        f"  FAILED  missing.listener       file://{tmp_path}/nope.avro: no such file",
        "  skipped missing.publishers[0]  zmq+push://127.0.0.1:5555: ZeroMQ has no handshake "
        "to try (it connects when a peer is there)",
        "  ok      missing.dead_letter    memory://dead: in this process",
        "3 ok, 1 FAILED, 1 skipped",
    ]
    assert not (tmp_path / "out.avro").exists()
