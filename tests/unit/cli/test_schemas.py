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


def check(tmp_path: Path, old: Any, new: Any, mode: str) -> Any:
    old_path, new_path = tmp_path / "old.avsc", tmp_path / "new.avsc"
    old_path.write_text(json.dumps(old if "type" in old else record(old)))
    new_path.write_text(json.dumps(new if "type" in new else record(new)))
    return runner.invoke(app, ["schemas", "check", str(old_path), str(new_path), "-m", mode])


def problems(output: str) -> list[str]:
    return [line.removeprefix("  - ") for line in output.splitlines() if line.startswith("  - ")]


RAW_CODES = [
    "reader_field_missing_default_value",
    "type_mismatch",
    "missing_enum_symbols",
    "missing_union_branch",
    "name_mismatch",
    "fixed_size_mismatch",
    "/fields/",
]

# (old, new, mode, the sentences `schemas check` prints, in order)
WORDED: dict[str, tuple[Any, Any, str, list[str]]] = {
    "removed field, forward": (
        BASE,
        BASE[:1],
        "forward",
        ["field 'sample' was removed and has no default: old readers cannot read new data"],
    ),
    "added required field, backward": (
        BASE,
        [*BASE, {"name": "run", "type": "long"}],
        "backward",
        [
            "field 'run' was added without a default: new readers cannot read old data "
            '(give it a default, or make it optional: ["null", ...] with default null)'
        ],
    ),
    "narrowed type, backward": (
        [{"name": "energy", "type": "long"}, BASE[1]],
        BASE,
        "backward",
        ["field 'energy' changed type from long to int: new readers cannot read old data"],
    ),
    "widened type, forward": (
        BASE,
        [{"name": "energy", "type": "double"}, BASE[1]],
        "forward",
        ["field 'energy' changed type from int to double: old readers cannot read new data"],
    ),
    "enum symbol removed, backward": (
        [{"name": "mode", "type": MODE_ENUM_MORE}],
        [{"name": "mode", "type": MODE_ENUM}],
        "backward",
        [
            "enum Mode at field 'mode' lost symbol(s) GRID: new readers cannot read old data "
            "that uses them"
        ],
    ),
    "enum symbol added, forward": (
        [{"name": "mode", "type": MODE_ENUM}],
        [{"name": "mode", "type": MODE_ENUM_MORE}],
        "forward",
        [
            "enum Mode at field 'mode' gained symbol(s) GRID, which the old schema does not "
            "know (and it has no enum default): old readers cannot read new data that uses them"
        ],
    ),
    "renamed with alias, forward": (
        BASE,
        [{"name": "energy_ev", "type": "int", "aliases": ["energy"]}, BASE[1]],
        "forward",
        [
            "field 'energy' was renamed to 'energy_ev', a name the old schema does not know, "
            "and has no default there: old readers cannot read new data"
        ],
    ),
    "nested field removed, full": (
        [{"name": "beam", "type": record([BASE[0]]) | {"name": "Beam"}}],
        [{"name": "beam", "type": record([]) | {"name": "Beam"}}],
        "full",
        ["field 'beam.energy' was removed and has no default: old readers cannot read new data"],
    ),
    "array items changed, full": (
        [{"name": "hits", "type": {"type": "array", "items": "long"}}],
        [{"name": "hits", "type": {"type": "array", "items": "string"}}],
        "full",
        [
            "field 'hits[]' changed type from long to string: new readers cannot read old data",
            "field 'hits[]' changed type from long to string: old readers cannot read new data",
        ],
    ),
    "optional became required, backward": (
        [{"name": "note", "type": ["null", "string"], "default": None}],
        [{"name": "note", "type": "string"}],
        "backward",
        [
            "field 'note' changed type from [null, string] to string: new readers cannot read "
            "old data (they cannot read its null values)"
        ],
    ),
    "union lost a branch, backward": (
        [{"name": "value", "type": ["null", "long", "string"]}],
        [{"name": "value", "type": ["null", "long"]}],
        "backward",
        [
            "field 'value' changed type from [null, long, string] to [null, long]: new readers "
            "cannot read old data (they cannot read its string values)"
        ],
    ),
    "record renamed, backward": (
        record(BASE),
        record(BASE) | {"name": "Frame2"},
        "backward",
        [
            "the top-level record was renamed from Frame to Frame2 (with no alias for the "
            "other name): new readers cannot read old data"
        ],
    ),
    "fixed resized, forward": (
        [{"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 16}}],
        [{"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 32}}],
        "forward",
        [
            "the fixed Digest at field 'digest' changed size from 16 to 32 bytes: old readers "
            "cannot read new data"
        ],
    ),
}


@pytest.mark.parametrize("case", sorted(WORDED))
def test_check_says_in_words_what_breaks_and_for_whom(tmp_path: Path, case: str) -> None:
    old, new, mode, expected = WORDED[case]
    result = check(tmp_path, old, new, mode)
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"NOT compatible ({mode})")
    assert problems(result.output) == expected
    for code in RAW_CODES:
        assert code not in result.output


def test_check_words_the_example_schemas(tmp_path: Path) -> None:
    """The shipped v1/v2 pair is fully compatible; v2 without 'detector' breaks v1 readers."""
    examples = Path(__file__).parents[3] / "schemas" / "examples"
    v1, v2 = examples / "frame-metadata-v1.avsc", examples / "frame-metadata-v2.avsc"
    both = runner.invoke(app, ["schemas", "check", str(v1), str(v2), "--mode", "full"])
    assert both.exit_code == 0, both.output
    assert both.output.startswith("compatible (full)")
    v3 = json.loads(v2.read_text())
    v3["fields"] = [f for f in v3["fields"] if f["name"] != "detector"]
    new = tmp_path / "frame-metadata-v3.avsc"
    new.write_text(json.dumps(v3))
    result = runner.invoke(app, ["schemas", "check", str(v1), str(new), "--mode", "full"])
    assert result.exit_code == 1
    assert problems(result.output) == [
        "field 'detector' was removed and has no default: old readers cannot read new data"
    ]


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
