"""A broker connector from another package: installed (editable) into a fresh
environment, found through the entry point group ``arroyo.connectors``, and run in a
pipeline as a listener and as a publisher.

The package is ``tests/thirdparty/arroyo-spool`` (``spool://FOLDER``: a folder of files
as a queue). The environment sees this one's packages (Arroyo and its dependencies)
through a ``.pth`` file, so only the connector is installed.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from arroyo import Run
from arroyo.brokers import open_listener, open_publisher
from arroyo.message import Message
from arroyo.testing import listening

SPOOL = Path(__file__).resolve().parents[2] / "thirdparty" / "arroyo-spool"


@pytest.fixture(scope="module")
def spool_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with Arroyo (this one's) and arroyo-spool installed."""
    venv = tmp_path_factory.mktemp("spool-env") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "host-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    subprocess.run([*pip, "--no-deps", "--editable", str(SPOOL)], check=True)
    return venv


def arroyo(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``arroyo`` command of ``venv`` (60 s at most)."""
    command = [str(venv / "bin" / "python"), "-m", "arroyo", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


async def write_run(path: Path, frames: int) -> list[Message]:
    """An Avro file holding one run of ``frames`` 8x8 frames; returns its messages."""
    run = Run("spool-run")
    sent: list[Message] = [run.start({"detector": "sim"})]
    sent += [run.array_event(np.full((8, 8), i, "<u2"), {"frame": i}) for i in range(frames)]
    sent.append(run.stop({"ok": True}))
    async with open_publisher(f"file://{path}") as publisher:
        for message in sent:
            await publisher.publish(message)
    return sent


async def read_file(path: Path, until: Callable[..., Any], count: int) -> list[Message]:
    """The messages of an Avro file."""
    async with listening(open_listener(f"file://{path}")) as got:
        await until(lambda: len(got.items) == count)
    return [m for item in got.items for m in (item.messages or [])]


async def test_a_third_party_connector_carries_a_pipeline(
    spool_env: Path, tmp_path: Path, until: Callable[..., Any]
) -> None:
    sent = await write_run(tmp_path / "in.avro", frames=20)
    folder = tmp_path / "spool"

    into = arroyo(spool_env, "bridge", f"file://{tmp_path}/in.avro", f"spool://{folder}")
    assert into.returncode == 0, into.stderr
    assert len(list(folder.glob("*.msg"))) == len(sent)

    out = arroyo(
        spool_env, "bridge", f"spool://{folder}?stop_at_end=true", f"file://{tmp_path}/out.avro"
    )
    assert out.returncode == 0, out.stderr
    assert await read_file(tmp_path / "out.avro", until, len(sent)) == sent
    assert not list(folder.iterdir()), "every message acknowledged: its file deleted"


def test_the_host_without_the_package_does_not_know_the_scheme(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "arroyo", "bridge", f"spool://{tmp_path}", "memory://x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "unknown URL scheme 'spool'" in result.stderr


def test_a_third_party_connector_checks_its_options(spool_env: Path, tmp_path: Path) -> None:
    result = arroyo(spool_env, "bridge", f"spool://{tmp_path}?stop_at_edn=true", "memory://x")
    assert result.returncode != 0
    assert "stop_at_edn" in result.stderr and "spool" in result.stderr
