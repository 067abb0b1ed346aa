"""``arroyo demo``, ``run``, ``bridge`` and ``tail`` on in-process and file connectors."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from arroyo import Run
from arroyo.brokers.file import FilePublisher
from arroyo.cli import app
from arroyo.message import Message

runner = CliRunner()


def write_run(path: Path, frames: int) -> list[Message]:
    run = Run("scan-7")
    messages: list[Message] = [run.start({"sample": "Si"})]
    messages += [run.array_event(np.full((4, 4), i, "<u2"), {"frame": i}) for i in range(frames)]
    messages.append(run.stop({"ok": True}))

    async def archive() -> None:
        async with FilePublisher(path) as publisher:
            for message in messages:
                await publisher.publish(message)

    asyncio.run(archive())
    return messages


def test_demo_runs_the_main_job_and_checks_its_output(tmp_path: Path) -> None:
    output = tmp_path / "results.avro"
    result = runner.invoke(app, ["demo", "--frames", "50", "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert "check         OK" in result.output
    assert "52/52 messages" in result.output
    assert output.stat().st_size > 0


def test_bridge_copies_a_stream(tmp_path: Path) -> None:
    sent = write_run(tmp_path / "in.avro", 5)
    result = runner.invoke(
        app, ["bridge", f"file://{tmp_path}/in.avro", f"file://{tmp_path}/out.avro"]
    )
    assert result.exit_code == 0, result.output
    tailed = runner.invoke(app, ["tail", f"file://{tmp_path}/out.avro"])
    lines = tailed.stdout.strip().splitlines()
    assert len(lines) == len(sent)
    assert lines[0].startswith("start stream=scan-7 seq=0")
    assert "array=<u2[4x4]" in lines[1]
    assert lines[-1].startswith("stop  stream=scan-7 seq=6")


def test_bridge_check_lazy_copies_a_stream_and_needs_arroyo_messages(tmp_path: Path) -> None:
    sent = write_run(tmp_path / "in.avro", 3)
    out = f"file://{tmp_path}/out.avro"
    result = runner.invoke(app, ["bridge", f"file://{tmp_path}/in.avro", out, "--check", "lazy"])
    assert result.exit_code == 0, result.output
    tailed = runner.invoke(app, ["tail", out])
    assert len(tailed.stdout.strip().splitlines()) == len(sent)
    refused = runner.invoke(
        app, ["bridge", "zmq+pull://127.0.0.1:5555?parser=json-frame", out, "--check", "lazy"]
    )
    assert refused.exit_code != 0
    assert "check: lazy reads Arroyo's own messages; parser 'json-frame' makes its own" in (
        refused.output
    )


def test_tail_count_stops_early(tmp_path: Path) -> None:
    write_run(tmp_path / "in.avro", 5)
    tailed = runner.invoke(app, ["tail", f"file://{tmp_path}/in.avro", "--count", "2"])
    assert tailed.exit_code == 0
    assert len(tailed.stdout.strip().splitlines()) == 2


def test_run_a_config(tmp_path: Path) -> None:
    sent = write_run(tmp_path / "in.avro", 3)
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            blocks:
              - name: integrate
                listener: file://{tmp_path}/in.avro
                operator: arroyo.operators:Integrate
                publishers: [file://{tmp_path}/out.avro]
            """
        )
    )
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 0, result.output
    tailed = runner.invoke(app, ["tail", f"file://{tmp_path}/out.avro"])
    lines = tailed.stdout.strip().splitlines()
    assert len(lines) == len(sent)
    assert "'total': 0.0" in lines[1]
    assert "'total': 16.0" in lines[2]


def test_run_refuses_a_broken_config_before_starting(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text("blocks:\n  - name: w\n    listener: memory://in\n    operator: nope:Op\n")
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 2
    assert "blocks[0] (w).operator: cannot import 'nope:Op'" in result.output


def test_every_command_has_help_with_examples() -> None:
    for command in ["run", "bridge", "tail", "demo", "schemas", "check"]:
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0
    for command in ["run", "bridge", "tail", "demo", "check"]:
        assert "Example" in runner.invoke(app, [command, "--help"]).output


def _traced_config(tmp_path: Path, tracing: bool) -> Path:
    write_run(tmp_path / "in.avro", 2)
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        (f"tracing: {str(tracing).lower()}\n" if tracing else "")
        + textwrap.dedent(
            f"""
            blocks:
              - name: integrate
                listener: file://{tmp_path}/in.avro
                operator: arroyo.operators:Integrate
                publishers: [file://{tmp_path}/out.avro]
            """
        )
    )
    return config


def test_run_with_tracing_in_the_yaml_exports_spans_as_the_otel_variables_say(
    tmp_path: Path,
) -> None:
    config = _traced_config(tmp_path, tracing=True)
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "beamline-7"}
    done = subprocess.run(
        [sys.executable, "-m", "arroyo", "run", str(config), "--log-format", "json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "tracing: on" in done.stderr
    names = re.findall(r'"name": "(\w+)"', done.stdout)  # the console exporter's JSON
    assert sorted(set(names)) == ["process", "publish", "receive"]
    assert names.count("receive") == 4  # Start, two Events, Stop
    assert '"service.name": "beamline-7"' in done.stdout


def test_run_with_tracing_without_the_extra_says_what_to_install_in_one_line(
    tmp_path: Path,
) -> None:
    config = _traced_config(tmp_path, tracing=False)
    script = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "from arroyo.cli import main\n"
        f"sys.argv = ['arroyo', 'run', {str(config)!r}, '--tracing']\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 2
    (line,) = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Tracing needs the Python package 'opentelemetry'" in line
    assert "pip install 'arroyo-streams[otel]'" in line
    assert not (tmp_path / "out.avro").exists()  # refused before anything ran
