"""``arroyo schemas``: list, show, and compatibility verdicts in each mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from arroyo.cli import app

runner = CliRunner()


def record(fields: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "record", "name": "Frame", "namespace": "facility", "fields": fields}


BASE = [{"name": "energy", "type": "int"}, {"name": "sample", "type": "string"}]
MODE_ENUM = {"type": "enum", "name": "Mode", "symbols": ["FLY", "STEP"]}
MODE_ENUM_MORE = {"type": "enum", "name": "Mode", "symbols": ["FLY", "STEP", "GRID"]}

# (old, new, backward, forward): full = backward and forward
PAIRS: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]], bool, bool]] = {
    "added optional field": (
        BASE,
        [*BASE, {"name": "note", "type": ["null", "string"], "default": None}],
        True,
        True,
    ),
    "removed field": (BASE, BASE[:1], True, False),
    "widened int to long": (BASE, [{"name": "energy", "type": "long"}, BASE[1]], True, False),
    "narrowed long to int": ([{"name": "energy", "type": "long"}, BASE[1]], BASE, False, True),
    "renamed with alias": (
        BASE,
        [{"name": "energy_ev", "type": "int", "aliases": ["energy"]}, BASE[1]],
        True,
        False,
    ),
    "enum symbol added": (
        [{"name": "mode", "type": MODE_ENUM}],
        [{"name": "mode", "type": MODE_ENUM_MORE}],
        True,
        False,
    ),
    "added required field": (BASE, [*BASE, {"name": "run", "type": "long"}], False, True),
}


@pytest.mark.parametrize("mode", ["backward", "forward", "full"])
@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_check_gives_the_registry_verdict(tmp_path: Path, pair: str, mode: str) -> None:
    old, new, backward, forward = PAIRS[pair]
    old_path, new_path = tmp_path / "old.avsc", tmp_path / "new.avsc"
    old_path.write_text(json.dumps(record(old)))
    new_path.write_text(json.dumps(record(new)))
    expected = {"backward": backward, "forward": forward, "full": backward and forward}[mode]
    result = runner.invoke(app, ["schemas", "check", str(old_path), str(new_path), "--mode", mode])
    assert result.exit_code == (0 if expected else 1), result.output
    assert result.output.startswith("compatible" if expected else "NOT compatible")


def test_check_explains_what_breaks(tmp_path: Path) -> None:
    old_path, new_path = tmp_path / "old.avsc", tmp_path / "new.avsc"
    old_path.write_text(json.dumps(record(BASE)))
    new_path.write_text(json.dumps(record(BASE[:1])))
    result = runner.invoke(app, ["schemas", "check", str(old_path), str(new_path), "-m", "forward"])
    assert "reader_field_missing_default_value" in result.output
    assert "sample" in result.output


def test_check_names_a_missing_or_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.avsc"
    broken.write_text('{"type": "record", "name": "X", "fields": [{"name": "a"}]}')
    result = runner.invoke(app, ["schemas", "check", str(broken), str(tmp_path / "nope.avsc")])
    assert result.exit_code == 2
    assert "broken.avsc" in result.output or "nope.avsc" in result.output


def test_list_and_show() -> None:
    listed = runner.invoke(app, ["schemas", "list"])
    assert listed.exit_code == 0
    for name in ["arroyo.Message", "arroyo.Start", "arroyo.Event", "arroyo.Stop"]:
        assert name in listed.output
    shown = runner.invoke(app, ["schemas", "show", "arroyo.Message"])
    definition = json.loads(shown.output)
    assert definition["name"] == "arroyo.Message"
    body = next(f for f in definition["fields"] if f["name"] == "body")
    assert [b["name"] for b in body["type"]] == ["arroyo.Start", "arroyo.Event", "arroyo.Stop"]
    unknown = runner.invoke(app, ["schemas", "show", "arroyo.Nope"])
    assert unknown.exit_code == 2
    assert "known: arroyo.Array" in unknown.output
