"""The runnable parts of the documentation: fenced blocks of README.md and the commands
in the header comments of connectors/*.yaml.

Conventions (visible to a reader, so a block's fate is never hidden):
- a block whose first line is ``# not run by the tests: REASON`` is not run;
- a block whose first line is ``# NAME.EXT`` (``# ops.py``, ``# pipeline.yaml``) is a
  file the reader writes: the tests write it into the clone, blocks after it use it;
- in a shell block, a line ending in ``# runs until Ctrl-C`` is started, watched until
  it is up (``started:`` in its log), then stopped with Ctrl-C (SIGINT), as a reader
  would; every other line runs to its end and must succeed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```(?P<lang>[\w+-]*)\s*$")
FILE_LINE = re.compile(r"^#\s*(?P<name>[\w./-]+\.(?:py|yaml|yml|avsc))\s*$")
NOT_RUN = re.compile(r"^#\s*not run by the tests:\s*(?P<reason>.+)$", re.IGNORECASE)
UNTIL_CTRL_C = re.compile(r"#\s*runs until Ctrl-C\s*$")
HEADER_COMMAND = re.compile(r"^#\s{2,}(?P<command>arroyo\s.+?)\s*(?:#.*)?$")


@dataclass(frozen=True)
class Snippet:
    """One fenced block (or one header command), where it is, and what to do with it."""

    where: str
    lang: str
    text: str
    filename: str | None = None
    not_run: str | None = None

    @property
    def id(self) -> str:
        first = next((line for line in self.text.splitlines() if line.strip()), "")
        return f"{self.where} {first[:60]}"


def readme_snippets(path: Path) -> list[Snippet]:
    """Every fenced block of a Markdown file, in order."""
    snippets: list[Snippet] = []
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match or not match["lang"]:
            index += 1
            continue
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines) and not lines[index].startswith("```"):
            body.append(lines[index])
            index += 1
        index += 1
        first = body[0] if body else ""
        skip, named = NOT_RUN.match(first), FILE_LINE.match(first)
        snippets.append(
            Snippet(
                where=f"{path.name}:{start + 1}",
                lang=match["lang"],
                text="\n".join(body) + "\n",
                filename=named["name"] if named else None,
                not_run=skip["reason"] if skip else None,
            )
        )
    return snippets


def header_commands(path: Path) -> list[str]:
    """The commands quoted in a YAML file's leading comment (indented ``#   arroyo ...``)."""
    commands = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        match = HEADER_COMMAND.match(line)
        if match:
            commands.append(match["command"])
    return commands
