"""``python -m bench.child MODULE FUNCTION JSON-ARGS``: one variant in a process of its own.

Calls ``bench.MODULE.FUNCTION(**args)`` (awaited when it is a coroutine function), which
returns a :class:`~bench.common.Timing`, and prints it with this process's peak RSS as
one JSON line after :data:`~bench.common.RESULT_MARK`. Standard library only (the peers'
variants run it in their own virtual environment).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import logging
import sys

from bench.common import RESULT_MARK, Timing, peak_rss_mb, percentile_ms


def main(argv: list[str]) -> int:
    module, function, args = argv
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    func = getattr(importlib.import_module(f"bench.{module}"), function)
    kwargs = json.loads(args)
    result = asyncio.run(func(**kwargs)) if inspect.iscoroutinefunction(func) else func(**kwargs)
    assert isinstance(result, Timing), f"{module}.{function} returned {type(result).__name__}"
    out = {
        "messages": result.messages,
        "seconds": result.seconds,
        "p50_ms": percentile_ms(result.latencies, 50),
        "p99_ms": percentile_ms(result.latencies, 99),
        "peak_rss_mb": peak_rss_mb(),
        "note": result.note,
    }
    print(RESULT_MARK + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
