"""Python's cyclic garbage collector, set for a process that moves many small messages.

Each message allocates a few short-lived containers (the received message's source, the
decoded Event and its metadata, a future per output), almost all freed by reference
counting as soon as the message is acknowledged. With Python's default settings the
collector still runs every 700 net allocations, and every tenth of its runs walks every
object the process holds: the imported modules, the schemas, the clients. In a Kafka ->
Kafka Block at 1 KiB that took about a sixth of the CPU (1.4 s of a 7 s run of 100,000
messages, in ``gc.callbacks``), and each full pass (about 45 ms) stalls every message
in flight.

So when the first Block of a process starts, :func:`tune`:

- freezes what the process holds then (``gc.freeze()``: modules, schemas, clients, the
  Block itself), which the collector then never walks again (reference counting still
  frees those objects when they are no longer used; a reference cycle among them is
  never collected: in a process that runs Blocks one after the other, the first Block's
  own objects stay once it has ended);
- raises the collector's first threshold to :data:`YOUNG_THRESHOLD` allocations (when it
  is lower), so that messages are mostly freed before the collector looks at them.

The same run then spent 0.2 s in the collector. ``ARROYO_GC=python`` in the environment
leaves Python's collector as it is (for a process that tunes it itself).
"""

from __future__ import annotations

import gc
import logging
import os

from arroyo.errors import ConfigError

log = logging.getLogger("arroyo.block")

ENV = "ARROYO_GC"
"""The environment variable: ``tuned`` (the default) or ``python`` (leave it as it is)."""

YOUNG_THRESHOLD = 10_000
"""Net allocations of container objects between two runs of the collector (Python's
default: 700)."""

_tuned = False


def tune() -> bool:
    """Once per process (the first call): freeze the heap and raise the collector's first
    threshold, as the module docstring says, unless ``ARROYO_GC=python``. Returns whether
    this call changed the collector. Raises ConfigError for another value of ARROYO_GC."""
    global _tuned
    wanted = os.environ.get(ENV, "tuned").strip().lower() or "tuned"
    if wanted not in ("tuned", "python"):
        raise ConfigError(
            f"environment variable {ENV}={os.environ[ENV]!r}: expected 'tuned' (the default: "
            "freeze the start-up heap, collect young objects less often) or 'python' "
            "(leave Python's garbage collector as it is)"
        )
    if _tuned or wanted == "python":
        return False
    _tuned = True
    gc.freeze()
    young, *older = gc.get_threshold()
    if young < YOUNG_THRESHOLD:
        gc.set_threshold(YOUNG_THRESHOLD, *older)
    log.debug(
        "garbage collector: %d start-up objects frozen, threshold %s (%s=python: as it was)",
        gc.get_freeze_count(),
        gc.get_threshold(),
        ENV,
    )
    return True
