"""The peers' rows: a peer that cannot be installed says so and the others go on; the
environments stay apart from this project's and out of git."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest

from bench import peers
from bench.common import ROOT
from bench.venvs import PEERS, SENTRY, Venv


@dataclass(frozen=True)
class Uninstallable(Venv):
    def ensure(self) -> str | None:
        return f"could not install {self.name}: no such distribution"


def test_an_uninstallable_peer_gives_failed_rows_that_say_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = Uninstallable("broken", ("nothing==0",), ("nothing",))
    monkeypatch.setattr(
        peers,
        "PEERS",
        [
            peers.Peer("one", broken, "peers", "quixstreams", {}, "nothing", (10, 10)),
            peers.Peer("two", broken, "peers", "quixstreams", {}, "nothing", (10, 10)),
            peers.Peer("full only", broken, "peers", "quixstreams", {}, "nothing", (0, 10)),
        ],
    )
    rows = peers.run(quick=True, repeat=1)
    assert [r.raw_label for r in rows] == ["one", "two"]
    for row in rows:
        assert row.raw.error == "could not install broken: no such distribution"
        assert row.note == row.raw.error
        assert row.verdict == ""


def test_each_peer_gets_the_same_fastavro_as_arroyo() -> None:
    from importlib.metadata import version

    for venv in (PEERS, SENTRY):
        assert f"fastavro=={version('fastavro')}" in venv.wanted()
    assert PEERS.path != SENTRY.path


def test_the_environments_are_not_committed() -> None:
    for venv in (PEERS, SENTRY):
        done = subprocess.run(
            ["git", "check-ignore", "-q", str(venv.path / "bin" / "python")],
            cwd=ROOT,
            check=False,
        )
        assert done.returncode == 0, f"{venv.path} is not ignored by git"


def test_sentry_arroyo_is_imported_without_this_project_on_the_path() -> None:
    from bench.sentry_arroyo import _without_this_project

    before = list(sys.path)
    with _without_this_project():
        assert str(ROOT) not in sys.path
        assert "" not in sys.path
    assert sys.path == before
