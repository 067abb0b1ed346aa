"""The peers' virtual environments: installed from PyPI on first use, never Arroyo's.

Two, because their pins exclude each other: quixstreams 3.28 needs confluent-kafka below
2.13, sentry-arroyo 2.48 needs 2.13.2 or later. sentry-arroyo also installs the import
name ``arroyo``, so it must never share an environment with this project (Arroyo refuses
to import next to it). Both get the fastavro of this project's environment, so that the
schema check costs them what it costs Arroyo.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from bench.common import ROOT


def _fastavro() -> str:
    try:
        return f"fastavro=={version('fastavro')}"
    except PackageNotFoundError:  # the parent runs without Arroyo's dependencies
        return "fastavro"


@dataclass(frozen=True)
class Venv:
    """One environment: where it lives, what it holds (pinned, so a figure can be
    reproduced), and the distributions whose versions the table names."""

    name: str
    packages: tuple[str, ...]
    reported: tuple[str, ...]

    @property
    def path(self) -> Path:
        return ROOT / "bench" / f".venv-{self.name}"

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def wanted(self) -> list[str]:
        return [*self.packages, _fastavro()]

    def ensure(self) -> str | None:
        """Create the environment if it is missing or holds other pins; None when ready,
        else why not (one line)."""
        marker = self.path / "installed.txt"
        wanted = "\n".join(self.wanted())
        if marker.exists() and marker.read_text() == wanted and self.python.exists():
            return None
        print(f"installing {', '.join(self.wanted())} into {self.path} (once)...", file=sys.stderr)
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(self.path)],
            [
                str(self.python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                *self.wanted(),
            ],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, check=False, timeout=600)
            if done.returncode != 0:
                tail = " | ".join(done.stderr.strip().splitlines()[-3:])
                return f"could not install {self.name} ({' '.join(step[:4])}...): {tail}"[:400]
        marker.write_text(wanted)
        return None

    def versions(self) -> dict[str, str]:
        """Installed versions of the reported distributions (and their Kafka clients)."""
        names = (*self.reported, "confluent-kafka", "fastavro")
        code = (
            "import importlib.metadata as m\n"
            f"for p in {names!r}:\n"
            "    try:\n"
            "        print(p, m.version(p))\n"
            "    except m.PackageNotFoundError:\n"
            "        pass"
        )
        done = subprocess.run(
            [str(self.python), "-c", code], capture_output=True, text=True, check=False, timeout=60
        )
        return dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)


PEERS = Venv(
    "peers",
    ("faststream[kafka]==0.7.8", "quixstreams==3.28.1"),
    ("faststream", "aiokafka", "quixstreams"),
)
SENTRY = Venv("sentry", ("sentry-arroyo==2.48.0",), ("sentry-arroyo",))
