"""deploy/grafana/arroyo.json: a Grafana dashboard built on the metrics Arroyo exports;
every query names only metrics that exist, panels do not overlap, and the block variable
selects on the ``block`` label."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from arroyo.brokers import memory
from arroyo.brokers.memory import MemoryListener
from arroyo.runtime import Block
from arroyo.runtime.lag import source
from arroyo.runtime.metrics import FRAME_COUNTERS

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "arroyo.json"
PLANNED: set[str] = set()
"""Metrics the dashboard may show before Arroyo exports them (none now). Remove a name
once it is exported."""


def exported(unique_name: Callable[[str], str]) -> set[str]:
    """Every sample name Arroyo's registry exports (with a Block registered that has
    received a message and read its lag)."""
    topic = unique_name("t")
    block = Block(MemoryListener(topic), name="dashboard")
    block.lag_watch.lag = {source(queue=topic): 0}
    block.stats.last_received = time.time()
    memory.delete(topic)
    names = {sample.name for family in REGISTRY.collect() for sample in family.samples}
    for name, _ in FRAME_COUNTERS.values():
        names.add(f"{name}_total")
    return {n for n in names if n.startswith("arroyo_")}


def targets(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_every_query_names_a_metric_arroyo_exports(unique_name: Callable[[str], str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    known = exported(unique_name)
    assert not PLANNED & known, f"exported now, take out of PLANNED: {PLANNED & known}"
    used: set[str] = set()
    for expr in targets(dashboard):
        names = set(re.findall(r"\barroyo_\w+", expr))
        assert names, expr
        assert names <= known | PLANNED, f"{expr}: unknown {names - known - PLANNED}"
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
        assert 'block=~"$block"' in expr, expr
        used |= names
    # The dashboard shows what matters: throughput, problems, backlog, latency, lag.
    for name in [
        "arroyo_received_total",
        "arroyo_dead_lettered_total",
        "arroyo_dropped_total",
        "arroyo_retried_total",
        "arroyo_queue_depth",
        "arroyo_in_flight",
        "arroyo_processing_seconds_bucket",
        "arroyo_end_to_end_latency_seconds_bucket",
        "arroyo_lag_messages",
        "arroyo_connected",
        "arroyo_last_message_timestamp_seconds",
    ]:
        assert name in used, name


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["description"], panel["title"]


def test_the_block_variable_lists_the_blocks() -> None:
    variables = {v["name"]: v for v in json.loads(DASHBOARD.read_text())["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["block"]["definition"] == "label_values(arroyo_received_total, block)"
    assert variables["block"]["includeAll"] and variables["block"]["multi"]
