"""What breaks when a schema changes, in words: one sentence per problem.

:func:`explain` walks an old and a new schema as Avro's schema resolution does (a reader
schema against the data a writer schema wrote) and says, for each problem, which field
(a dotted path: ``metadata.frame``, ``hits[]`` for array items, ``tags{}`` for map
values), what changed, and who breaks: new readers of old data (backward compatibility)
or old readers of new data (forward)::

    field 'detector' was removed and has no default: old readers cannot read new data

The verdict itself comes from Apache Avro's checker (:func:`arroyo.schema.check_compatibility`);
these sentences only say why, following the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "enum", "fixed"})
_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}
"""Writer type -> the reader types it is promoted to."""


def _index(node: Any, names: dict[str, Any]) -> None:
    """Collect the named types of a schema (full names, as :class:`Schema` writes them)."""
    if isinstance(node, list):
        for branch in node:
            _index(branch, names)
    elif isinstance(node, dict):
        kind = node.get("type")
        if kind in _NAMED and isinstance(node.get("name"), str):
            names.setdefault(node["name"], node)
        if kind == "record":
            for f in node.get("fields", []):
                _index(f.get("type"), names)
        elif kind == "array":
            _index(node.get("items"), names)
        elif kind == "map":
            _index(node.get("values"), names)
        elif isinstance(kind, dict | list):
            _index(kind, names)


@dataclass
class _Side:
    names: dict[str, Any] = field(default_factory=dict)

    def resolve(self, node: Any) -> Any:
        """A type without indirections: a primitive name, a union (list) or a dict."""
        while True:
            if isinstance(node, str) and node not in PRIMITIVES and node in self.names:
                node = self.names[node]
            elif isinstance(node, dict) and (
                node.get("type") in PRIMITIVES or isinstance(node.get("type"), dict | list)
            ):
                node = node["type"]
            else:
                return node


def _kind(node: Any) -> str:
    if isinstance(node, list):
        return "union"
    if isinstance(node, dict):
        return str(node.get("type"))
    return str(node)


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


@dataclass
class _Walk:
    """One direction: can ``reader`` read what ``writer`` wrote? ``reader_is_new`` tells
    which of the two is the new schema, for the wording."""

    reader: _Side
    writer: _Side
    reader_is_new: bool
    problems: list[str] = field(default_factory=list)
    _seen: set[tuple[int, int]] = field(default_factory=set)

    @property
    def who(self) -> str:
        return (
            "new readers cannot read old data"
            if self.reader_is_new
            else "old readers cannot read new data"
        )

    def describe(self, node: Any, side: _Side) -> str:
        node = side.resolve(node)
        if isinstance(node, list):
            return "[" + ", ".join(self.describe(b, side) for b in node) + "]"
        if isinstance(node, dict):
            kind = node.get("type")
            if kind in _NAMED:
                return f"{kind} {_short(str(node.get('name')))}"
            if kind == "array":
                return f"array of {self.describe(node.get('items'), side)}"
            if kind == "map":
                return f"map of {self.describe(node.get('values'), side)}"
        return str(node)

    def _changed(self, path: str, reader: Any, writer: Any, detail: str = "") -> None:
        old, new = (writer, reader) if self.reader_is_new else (reader, writer)
        old_side, new_side = (
            (self.writer, self.reader) if self.reader_is_new else (self.reader, self.writer)
        )
        self.problems.append(
            f"{_field(path)} changed type from {self.describe(old, old_side)} to "
            f"{self.describe(new, new_side)}: {self.who}{detail}"
        )

    def readable(self, reader: Any, writer: Any) -> bool:
        """Whether ``reader`` reads all ``writer`` data (no sentence recorded)."""
        probe = _Walk(self.reader, self.writer, self.reader_is_new, _seen=set(self._seen))
        probe.check(reader, writer, "")
        return not probe.problems

    def check(self, reader: Any, writer: Any, path: str) -> None:
        """Record a sentence for each way ``reader`` fails to read ``writer`` data."""
        r, w = self.reader.resolve(reader), self.writer.resolve(writer)
        rk, wk = _kind(r), _kind(w)
        if wk == "union":
            for branch in w:
                b = self.writer.resolve(branch)
                if rk == "union":
                    self._branch(r, b, path, reader, writer)
                elif self.readable(r, b):
                    continue
                elif _kind(b) == rk:
                    self.check(r, b, path)
                else:
                    detail = f" (they cannot read its {_kind(b)} values)"
                    self._changed(path, reader, writer, detail)
            return
        if rk == "union":
            self._branch(r, w, path, reader, writer)
            return
        if rk != wk:
            if rk not in _PROMOTIONS.get(wk, set()):
                self._changed(path, reader, writer)
            return
        if rk in PRIMITIVES:
            return
        if rk == "array":
            self.check(r.get("items"), w.get("items"), f"{path}[]")
        elif rk == "map":
            self.check(r.get("values"), w.get("values"), f"{path}{{}}")
        elif rk in _NAMED:
            self._named(r, w, path)

    def _branch(self, union: list[Any], branch: Any, path: str, reader: Any, writer: Any) -> None:
        """A writer value of type ``branch`` read by the reader's ``union``."""
        if any(self.readable(option, branch) for option in union):
            return
        same = [o for o in union if _kind(self.reader.resolve(o)) == _kind(branch)]
        if same:
            self.check(same[0], branch, path)
        else:
            self._changed(path, reader, writer, f" (they cannot read its {_kind(branch)} values)")

    def _named(self, r: dict[str, Any], w: dict[str, Any], path: str) -> None:
        kind = r["type"]
        r_name, w_name = str(r.get("name")), str(w.get("name"))
        aliases = r.get("aliases") or []
        if _short(r_name) != _short(w_name) and w_name not in aliases:
            old, new = (w_name, r_name) if self.reader_is_new else (r_name, w_name)
            what = f"the {kind} at {_field(path)}" if path else f"the top-level {kind}"
            self.problems.append(
                f"{what} was renamed from {_short(old)} to {_short(new)} (with no alias for "
                f"the other name): {self.who}"
            )
            return
        if kind == "fixed":
            if r.get("size") != w.get("size"):
                old_size, new_size = (
                    (w.get("size"), r.get("size"))
                    if self.reader_is_new
                    else (r.get("size"), w.get("size"))
                )
                self.problems.append(
                    f"the fixed {_short(r_name)} at {_field(path)} changed size from "
                    f"{old_size} to {new_size} bytes: {self.who}"
                )
        elif kind == "enum":
            self._enum(r, w, path)
        else:
            key = (id(r), id(w))
            if key not in self._seen:
                self._seen.add(key)
                self._record(r, w, path)

    def _enum(self, r: dict[str, Any], w: dict[str, Any], path: str) -> None:
        missing = [s for s in w.get("symbols", []) if s not in r.get("symbols", [])]
        default = r.get("default")
        if not missing or (default is not None and default in r.get("symbols", [])):
            return
        symbols = ", ".join(missing)
        if self.reader_is_new:
            self.problems.append(
                f"enum {_short(str(r.get('name')))} at {_field(path)} lost symbol(s) {symbols}: "
                f"{self.who} that uses them"
            )
        else:
            self.problems.append(
                f"enum {_short(str(r.get('name')))} at {_field(path)} gained symbol(s) {symbols}, "
                f"which the old schema does not know (and it has no enum default): "
                f"{self.who} that uses them"
            )

    def _record(self, r: dict[str, Any], w: dict[str, Any], path: str) -> None:
        written = {f["name"]: f for f in w.get("fields", [])}
        for reader_field in r.get("fields", []):
            name = reader_field["name"]
            where = f"{path}.{name}" if path else name
            found = written.get(name)
            for alias in reader_field.get("aliases") or []:
                found = found or written.get(alias)
            if found is not None:
                self.check(reader_field["type"], found["type"], where)
            elif "default" not in reader_field:
                self._missing(name, where, w)

    def _missing(self, name: str, where: str, writer_record: dict[str, Any]) -> None:
        if self.reader_is_new:
            self.problems.append(
                f"{_field(where)} was added without a default: {self.who} "
                '(give it a default, or make it optional: ["null", ...] with default null)'
            )
            return
        renamed = [
            f["name"] for f in writer_record.get("fields", []) if name in (f.get("aliases") or [])
        ]
        if renamed:
            self.problems.append(
                f"{_field(where)} was renamed to {renamed[0]!r}, a name the old schema does "
                f"not know, and has no default there: {self.who}"
            )
        else:
            self.problems.append(f"{_field(where)} was removed and has no default: {self.who}")


def _field(path: str) -> str:
    return f"field {path!r}" if path else "the top-level record"


def explain(old: dict[str, Any], new: dict[str, Any], backward: bool, forward: bool) -> list[str]:
    """One sentence per problem of replacing ``old`` by ``new`` (self-contained schema
    definitions): those breaking new readers of old data when ``backward``, those
    breaking old readers of new data when ``forward``."""
    old_side, new_side = _Side(), _Side()
    _index(old, old_side.names)
    _index(new, new_side.names)
    problems: list[str] = []
    if backward:
        walk = _Walk(new_side, old_side, reader_is_new=True)
        walk.check(new, old, "")
        problems += walk.problems
    if forward:
        walk = _Walk(old_side, new_side, reader_is_new=False)
        walk.check(old, new, "")
        problems += walk.problems
    return list(dict.fromkeys(problems))
