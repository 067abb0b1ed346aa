"""Reading deploy/Dockerfile: its instructions by stage, enough to replay the build stage
and run the final stage's command in a venv laid out as in the image (no Docker engine
needed)."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Stage:
    """One ``FROM`` of the Dockerfile and the instructions after it, in order."""

    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        """The arguments of every ``keyword`` instruction (upper case), in order."""
        return [args for key, args in self.instructions if key == keyword]

    def last(self, keyword: str) -> str:
        """The arguments of the last ``keyword`` instruction (KeyError when none)."""
        found = self.all(keyword)
        if not found:
            raise KeyError(f"no {keyword} in the stage FROM {self.image}")
        return found[-1]

    def exec_form(self, keyword: str) -> list[str]:
        """A JSON-array instruction (ENTRYPOINT, CMD) as its list."""
        value = json.loads(self.last(keyword))
        assert isinstance(value, list), f"{keyword} is not in exec form: {value!r}"
        return [str(part) for part in value]

    def env(self) -> dict[str, str]:
        """Every ``ENV KEY=value`` of the stage, quotes removed, ``${VAR}`` unexpanded."""
        found: dict[str, str] = {}
        for args in self.all("ENV"):
            for token in shlex.split(args, posix=True):
                key, _, value = token.partition("=")
                found[key] = value
        return found


def read(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """The ``ARG`` defaults declared before the first FROM, and the stages."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    arguments: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", args, re.IGNORECASE)
            assert match, f"cannot read FROM {args}"
            stages.append(Stage(match[1], match[2]))
        elif stages:
            stages[-1].instructions.append((keyword, args))
        elif keyword == "ARG":
            name, _, default = args.partition("=")
            arguments[name] = default
    return arguments, stages


def build_arguments(stage: Stage) -> dict[str, str]:
    """The ``ARG NAME=default`` of a stage."""
    found = {}
    for args in stage.all("ARG"):
        name, _, default = args.partition("=")
        found[name] = default.strip('"')
    return found
