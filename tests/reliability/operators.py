"""Operators for ``arroyo run`` workers in the reliability tests, written next to their
pipeline (the workers import them from its folder)."""

from __future__ import annotations

import textwrap
from pathlib import Path


def slow_operator(folder: Path, seconds: float) -> str:
    """Write an operator that takes ``seconds`` per message into ``folder``; its
    ``operator:`` reference for the pipeline."""
    (folder / "slow.py").write_text(
        textwrap.dedent(
            f"""
            import asyncio
            from arroyo.runtime import Operator

            class Slow(Operator):
                async def process(self, message):
                    await asyncio.sleep({seconds!r})
                    return message
            """
        )
    )
    return "slow:Slow"
