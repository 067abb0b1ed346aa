"""``python -m bench [--quick] [--only codec,...] [--json PATH]``."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from bench.common import Row, machine, save, table

PATHS = ["codec"]
"""Benchmark modules, in the order they run; each has ``run(quick) -> list[Row]``."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs (about a minute)")
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(PATHS)}")
    parser.add_argument("--json", type=Path, default=Path("bench/results/latest.json"))
    args = parser.parse_args(argv)
    selected = args.only.split(",") if args.only else PATHS
    unknown = sorted(set(selected) - set(PATHS))
    if unknown:
        parser.error(f"unknown path(s) {unknown}; known: {PATHS}")
    rows: list[Row] = []
    began = time.monotonic()
    for name in selected:
        print(f"running {name}...", file=sys.stderr, flush=True)
        rows += importlib.import_module(f"bench.{name}").run(args.quick)
    print(
        f"\n{machine()}; {'quick' if args.quick else 'full'} run, "
        f"{time.monotonic() - began:.0f} s\n"
    )
    print(table(rows))
    save(rows, args.json)
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
