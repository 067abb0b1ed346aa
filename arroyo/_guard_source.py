"""The Python source of a guard (see :mod:`arroyo.codec_guard`): functions that step over
a value of a writer schema in the Avro binary encoding, building nothing.

A record, union, array or map is written inline where the schema has it, so that a small
message costs few calls; a function is written for a named type used again (up to a line
budget), for a type inside itself, and where inline code would nest too deep for Python.
Every function is ``f(buf, pos, room, left) -> end``: the value at ``pos`` with ``room``
more levels of nesting allowed and ``left[0]`` more items, the position after it.

While it walks, a function keeps in ``at`` where it is (``.data``, relative to the
function or to the array item or map entry it is in); a refusal collects these on its
way out, innermost first. Names and strings from the schema appear in the source only as
``repr()`` literals or ``int()`` numbers, never as code.
"""

from __future__ import annotations

from typing import Any

from arroyo.errors import DecodeError

DEPTH, ITEMS, SHORT = "depth", "items", "the message ends early"

VALUE = "arroyo.Value"  # Arroyo's JSON-like value: its one field, a union, stays out of paths
ENVELOPE = "arroyo.Message"  # its body field stays out of paths: data.a, not body.data.a
_NAMED = ("record", "error", "enum", "fixed")
_SMALLEST = {"null": 0, "boolean": 1, "int": 1, "long": 1, "float": 4, "double": 8}
_SMALLEST |= {"string": 1, "bytes": 1}
_FIXED_SIZE = {"null": 0, "boolean": 1, "float": 4, "double": 8}
_INLINE_LINES = 5000  # lines written inline for named types used again, then calls
_MAX_BLOCKS = 14  # inline code nested deeper than this becomes a call (Python allows 20)


class Refused(Exception):
    """Why a walk stopped; ``path`` is filled innermost first while it unwinds."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []


def _full(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def source(definition: dict[str, Any]) -> tuple[str, str]:
    """The source of the functions stepping over ``definition`` (a record, plain JSON)
    and the name of the one for the whole record."""
    return _Source(definition).build()


class _Source:
    def __init__(self, definition: dict[str, Any]) -> None:
        self.definition = definition
        self.named: dict[str, tuple[dict[str, Any], str]] = {}  # full name: (schema, namespace)
        self._collect(definition, "")
        self.functions: dict[Any, str] = {}
        self.chunks: list[str] = []
        self.budget = _INLINE_LINES
        self.uid = 0
        self.at: str | None = None  # what ``at`` holds where the next line runs, if known
        self._counts: dict[str, bool] = {}

    def _collect(self, schema: Any, namespace: str) -> None:
        if isinstance(schema, list):
            for branch in schema:
                self._collect(branch, namespace)
        elif isinstance(schema, dict):
            kind = schema.get("type")
            if kind in _NAMED:
                full = _full(str(schema["name"]), schema.get("namespace", namespace))
                if full not in self.named:
                    inner = full.rpartition(".")[0]
                    self.named[full] = (schema, inner)
                    for field in schema.get("fields", []):
                        self._collect(field["type"], inner)
            elif kind == "array":
                self._collect(schema["items"], namespace)
            elif kind == "map":
                self._collect(schema["values"], namespace)
            else:
                self._collect(kind, namespace)

    def resolve(self, schema: Any, namespace: str) -> tuple[str, Any]:
        """``("prim", name)``, ``("named", full name)``, ``("union", branches)``,
        ``("array", items)`` or ``("map", values)``."""
        if isinstance(schema, str):
            if schema in _SMALLEST:
                return "prim", schema
            for name in (_full(schema, namespace), schema):
                if name in self.named:
                    return "named", name
            raise DecodeError(f"the writer schema uses the type {schema!r} without defining it")
        if isinstance(schema, list):
            return "union", schema
        kind = schema["type"]
        if kind in _NAMED:
            return "named", _full(str(schema["name"]), schema.get("namespace", namespace))
        if kind == "array":
            return "array", schema["items"]
        if kind == "map":
            return "map", schema["values"]
        return self.resolve(kind, namespace)  # a primitive with attributes (a logical type)

    def counts(self, full: str) -> bool:
        """Whether a record contains itself other than through an array or a map."""
        if full not in self._counts:
            schema, namespace = self.named[full]
            todo = [(f["type"], namespace) for f in schema.get("fields", [])]
            seen: set[str] = set()
            found = False
            while todo and not found:
                node, space = todo.pop()
                kind, arg = self.resolve(node, space)
                if kind == "union":
                    todo += [(branch, space) for branch in arg]
                elif kind == "named":
                    found = arg == full
                    inner_schema, inner = self.named[arg]
                    if arg not in seen and inner_schema["type"] in ("record", "error"):
                        seen.add(arg)
                        todo += [(f["type"], inner) for f in inner_schema["fields"]]
            self._counts[full] = found
        return self._counts[full]

    def size(self, schema: Any, namespace: str, smallest: bool, visiting: frozenset[str]) -> int:
        """The fewest bytes a value takes (``smallest``), or its one size (-1: it varies)."""
        kind, arg = self.resolve(schema, namespace)
        if kind == "prim":
            return _SMALLEST[arg] if smallest else _FIXED_SIZE.get(arg, -1)
        if kind != "named":
            return 1 if smallest else -1
        found, inner = self.named[arg]
        if found["type"] == "fixed":
            return int(found["size"])
        if found["type"] == "enum" or arg in visiting:
            return (1 if found["type"] == "enum" else 0) if smallest else -1
        sizes = [self.size(f["type"], inner, smallest, visiting | {arg}) for f in found["fields"]]
        return -1 if -1 in sizes else sum(sizes)

    # -- writing -------------------------------------------------------------------

    def build(self) -> tuple[str, str]:
        root = self.function(self.definition, "")
        return "\n".join(self.chunks), root

    def function(self, schema: Any, namespace: str) -> str:
        """The name of the function stepping over ``schema``, written when new."""
        kind, arg = self.resolve(schema, namespace)
        key = arg if kind == "named" else id(schema)
        if key in self.functions:
            return self.functions[key]
        name = self.functions[key] = f"f{len(self.functions)}"
        head = [f"def {name}(buf, pos, room, left):", "    n = len(buf)", "    at = ''"]
        body: list[str] = []
        outer, self.at = self.at, ""
        if kind == "named" and self.named[arg][0]["type"] in ("record", "error"):
            if self.counts(arg):
                head += ["    if room <= 0:", "        raise Refused(DEPTH)", "    room -= 1"]
            self.record(arg, "", (arg,), body, " " * 8)
        else:
            self.emit(schema, namespace, "", (), body, " " * 8)
        tail = [
            "    except (Refused, IndexError) as e:",
            "        raise _fail(e, at) from None",
            "    return pos",
        ]
        self.chunks.append("\n".join([*head, "    try:", *(body or ["        pass"]), *tail]))
        self.at = outer
        return name

    def put(self, out: list[str], *lines: str) -> None:
        out += lines
        self.budget -= len(lines)

    def where(self, out: list[str], ind: str, at: str) -> None:
        """Set ``at`` (unless it already holds that)."""
        if self.at != at:
            self.put(out, f"{ind}at = {at!r}")
            self.at = at

    def emit(
        self, schema: Any, namespace: str, at: str, stack: tuple[str, ...], out: list[str], ind: str
    ) -> None:
        """Write the lines stepping over one value of ``schema`` at ``at``."""
        kind, arg = self.resolve(schema, namespace)
        if kind in ("union", "array", "map") and len(ind) // 4 > _MAX_BLOCKS:
            name = self.function(schema, namespace)
            self.where(out, ind, at)
            self.put(out, f"{ind}pos = {name}(buf, pos, room, left)")
        elif kind == "prim":
            self.primitive(arg, at, out, ind)
        elif kind == "union":
            self.union(arg, namespace, at, stack, out, ind)
        elif kind in ("array", "map"):
            self.loop(kind == "map", arg, namespace, at, stack, out, ind)
        else:
            found = self.named[arg][0]
            if found["type"] == "enum":
                self.primitive("long", at, out, ind)
            elif found["type"] == "fixed":
                self.put(out, f"{ind}pos += {int(found['size'])}")
            elif (
                arg in stack
                or self.counts(arg)
                or (isinstance(schema, str) and self.budget <= 0)
                or len(ind) // 4 > _MAX_BLOCKS
            ):
                name = self.function(arg, "")
                self.where(out, ind, at)
                self.put(out, f"{ind}pos = {name}(buf, pos, room, left)")
            else:
                self.record(arg, at, (*stack, arg), out, ind)

    def record(self, full: str, at: str, stack: tuple[str, ...], out: list[str], ind: str) -> None:
        schema, namespace = self.named[full]
        fields = schema["fields"]
        if full == VALUE and len(fields) == 1 and isinstance(fields[0]["type"], list):
            self.emit(fields[0]["type"], namespace, at, stack, out, ind)
            return
        for field in fields:
            hidden = full == ENVELOPE and field["name"] == "body"
            where = at if hidden else f"{at}.{field['name']}"
            self.emit(field["type"], namespace, where, stack, out, ind)

    def read(self, var: str, out: list[str], ind: str, two: bool = False) -> None:
        """Read a varint into ``var`` (one byte, or ``two``, without a call)."""
        self.put(
            out,
            f"{ind}b = buf[pos]",
            f"{ind}if b < 0x80:",
            f"{ind}    {var} = (b >> 1) ^ -(b & 1)",
            f"{ind}    pos += 1",
        )
        if two:
            self.put(
                out,
                f"{ind}elif buf[pos + 1] < 0x80:",
                f"{ind}    b = (b & 0x7F) | (buf[pos + 1] << 7)",
                f"{ind}    {var} = (b >> 1) ^ -(b & 1)",
                f"{ind}    pos += 2",
            )
        self.put(out, f"{ind}else:", f"{ind}    {var}, pos = _varint(buf, pos)")

    def primitive(self, name: str, at: str, out: list[str], ind: str) -> None:
        if name in _FIXED_SIZE:
            if _FIXED_SIZE[name]:
                self.put(out, f"{ind}pos += {_FIXED_SIZE[name]}")
        elif name in ("int", "long"):
            self.where(out, ind, at)
            self.put(
                out,
                f"{ind}if buf[pos] < 0x80:",
                f"{ind}    pos += 1",
                f"{ind}else:",
                f"{ind}    pos = _skip_varint(buf, pos)",
            )
        else:  # string, bytes
            self.where(out, ind, at)
            self.read("size", out, ind, two=True)
            self.put(
                out,
                f"{ind}if not 0 <= size <= n - pos:",
                f"{ind}    raise _length(size, n - pos)",
                f"{ind}pos += size",
            )

    def union(
        self, branches: list[Any], namespace: str, at: str, stack: tuple[str, ...],
        out: list[str], ind: str,
    ) -> None:  # fmt: skip
        # The branch number as written (zig-zag: branch i is 2 * i): no arithmetic for the
        # one-byte numbers of every union of fewer than 64 branches.
        self.where(out, ind, at)
        self.put(
            out,
            f"{ind}b = buf[pos]",
            f"{ind}if b < 0x80:",
            f"{ind}    pos += 1",
            f"{ind}else:",
            f"{ind}    b, pos = _unsigned(buf, pos)",
        )
        for index, branch in enumerate(branches):
            lines: list[str] = []
            self.at = at
            self.emit(branch, namespace, at, stack, lines, ind + "    ")
            self.put(out, f"{ind}{'elif' if index else 'if'} b == {2 * index}:")
            out += lines or [f"{ind}    pass"]
        self.put(out, f"{ind}else:", f"{ind}    raise _branch(b, {len(branches)})")
        self.at = None

    def loop(
        self, is_map: bool, items: Any, namespace: str, at: str, stack: tuple[str, ...],
        out: list[str], ind: str,
    ) -> None:  # fmt: skip
        self.uid += 1
        count, index, start = f"c{self.uid}", f"i{self.uid}", f"s{self.uid}"
        what = "map" if is_map else "array"
        smallest = self.size(items, namespace, True, frozenset()) + (1 if is_map else 0)
        each = -1 if is_map else self.size(items, namespace, False, frozenset())
        self.where(out, ind, at)
        self.put(
            out,
            f"{ind}if room <= 0:",
            f"{ind}    raise Refused(DEPTH)",
            f"{ind}room -= 1",
            f"{ind}{index} = 0",
            f"{ind}while True:",
            f"{ind}    at = {at!r}",
        )
        inside = ind + "    "
        self.read(count, out, inside)
        self.put(
            out,
            f"{inside}if {count} == 0:",
            f"{inside}    break",
            f"{inside}if {count} < 0:",
            f"{inside}    {count} = -{count}",
            f"{inside}    size, pos = _varint(buf, pos)",
            f"{inside}    if not 0 <= size <= n - pos:",
            f"{inside}        raise _block({what!r}, size, 'bytes', n - pos)",
        )
        if smallest > 0:
            self.put(
                out,
                f"{inside}if {count} * {smallest} > n - pos:",
                f"{inside}    raise _block({what!r}, {count}, 'items', n - pos)",
            )
        self.put(
            out,
            f"{inside}left[0] -= {count}",
            f"{inside}if left[0] < 0:",
            f"{inside}    raise Refused(ITEMS)",
        )
        if each >= 0:  # items of one size (or none): stepped over at once
            if each:
                self.put(out, f"{inside}pos += {count} * {each}")
            self.put(out, f"{ind}room += 1")
            self.at = at
            return
        body = inside + " " * 8
        lines: list[str] = []
        self.at = None
        if is_map:
            self.primitive("string", "", lines, body)
        self.emit(items, namespace, "", stack, lines, body)
        self.put(
            out,
            f"{inside}for _ in range({count}):",
            f"{inside}    {start} = pos",
            f"{inside}    try:",
        )
        out += lines or [f"{body}pass"]
        self.put(
            out,
            f"{inside}    except (Refused, IndexError) as e:",
            f"{inside}        e = _item(e, at, buf, {start}, {index}, {is_map})",
            f"{inside}        at = {at!r}",
            f"{inside}        raise e from None",
            f"{inside}    {index} += 1",
            f"{ind}room += 1",
        )
        self.at = None
