"""Ready-made operators, usable in configs as ``arroyo.operators:<Name>``.

``passthrough`` (publish what comes in) is also available by its short name.
"""

from __future__ import annotations

from arroyo._optional import require
from arroyo.message import Event, Message
from arroyo.runtime.operator import Operator, Output, Passthrough

__all__ = ["Integrate", "Passthrough"]


class Integrate(Operator):
    """Per frame: total counts, maximum and the centre of mass of the intensity."""

    def __init__(self) -> None:
        self.np = require("numpy", "numpy", "The demo's operator")

    async def process(self, message: Message) -> Output:
        """Integrate an Event's frame; pass Start and Stop through."""
        if not isinstance(message, Event):
            return message
        np = self.np
        frame = message.to_array()
        total = float(frame.sum(dtype=np.float64))
        rows = frame.sum(axis=1, dtype=np.float64)
        cols = frame.sum(axis=0, dtype=np.float64)
        result = {
            "frame": message.metadata.get("frame"),
            "total": total,
            "max": int(frame.max()),
            "centroid_row": float(rows @ np.arange(rows.size)) / total if total else 0.0,
            "centroid_col": float(cols @ np.arange(cols.size)) / total if total else 0.0,
        }
        return Event(result, b"", stream=message.stream, seq=message.seq)
