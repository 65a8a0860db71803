"""Where a `kedro run`'s wall time goes: per node, and per phase inside each training stage.

`NodeTimingHook` (hooks.py) times every node and picks up the phases that each training
stage reports in its summary (`training.telemetry.PhaseClock`). It saves one record per run
(the catalog's `run_timing`). `breakdown` turns a record into the two tables that
`tools/run_breakdown.py` prints and plots. The numbers are the run's own telemetry, not a
stopwatch around it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# The trainer's phases, grouped the way the README's breakdown reads them.
PHASE_GROUPS = {
    "imports": "import", "rendezvous": "start-up", "model": "start-up", "data": "data",
    "engine": "start-up", "tracking": "tracking", "eval": "eval", "train": "train",
    "checkpoint": "save", "save": "save",
}


def process_started_at(pid: int | None = None) -> float:
    """When the kernel created the process (seconds since the epoch), so that the phase
    before the first line of Python (the interpreter and its imports) is measured too.

    On Linux from /proc: the start tick against the uptime, both since boot. (psutil adds
    the boot time in whole seconds, which put up to a second too many into `imports`.)
    """
    try:
        stat = Path(f"/proc/{pid or os.getpid()}/stat").read_text()
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - (uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        import psutil

        return psutil.Process(pid or os.getpid()).create_time()


def training_summaries(value: Any, depth: int = 3) -> Iterator[dict[str, Any]]:
    """The trainer summaries (dicts with `phases`) inside a node's output."""
    if depth < 0:
        return
    if isinstance(value, dict):
        if "phases" in value and "stage" in value:
            yield value
            return
        for item in value.values():
            yield from training_summaries(item, depth - 1)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from training_summaries(item, depth - 1)


class RunTiming:
    """Collects node times during a run; `record()` is what the catalog saves."""

    def __init__(self, process_started: float) -> None:
        self.process_started = process_started
        self.pipeline_started: float | None = None
        self.nodes: list[dict[str, Any]] = []
        self._open: dict[str, float] = {}

    def pipeline_start(self) -> None:
        self.pipeline_started = time.time()

    def node_start(self, name: str) -> None:
        self._open[name] = time.time()

    def node_end(self, name: str, namespace: str | None, outputs: dict[str, Any]) -> None:
        started = self._open.pop(name, None)
        if started is None:
            return
        self.nodes.append({
            "node": name, "namespace": namespace, "seconds": round(time.time() - started, 3),
            "started_at": round(started - self.process_started, 3),
            "stages": [{"stage": s["stage"], "phases": s["phases"],
                        "seconds_to_first_step": s.get("seconds_to_first_step")}
                       for s in training_summaries(outputs)]})

    def record(self) -> dict[str, Any]:
        now = time.time()
        ran = sum(n["seconds"] for n in self.nodes)
        before = (self.pipeline_started or now) - self.process_started
        return {"wall_seconds": round(now - self.process_started, 3),
                "kedro_startup_seconds": round(before, 3),
                "between_nodes_seconds": round(now - self.process_started - before - ran, 3),
                "nodes": self.nodes}


def breakdown(record: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """(rows per node, largest first; seconds per phase over the whole run).

    A training node's time splits into its stages' phases, plus `launch` (starting the
    trainer process and reading its result, what the stages' own clocks do not see).
    Other nodes count as `other nodes`, Kedro's own start-up and the gaps between nodes as
    `kedro`.
    """
    phases: dict[str, float] = {"kedro": record["kedro_startup_seconds"]
                                + max(record["between_nodes_seconds"], 0.0)}
    rows = []
    for node in record["nodes"]:
        inside = 0.0
        split: dict[str, float] = {}
        for stage in node["stages"]:
            for phase, seconds in stage["phases"].items():
                group = PHASE_GROUPS.get(phase, phase)
                split[group] = split.get(group, 0.0) + seconds
                inside += seconds
        if node["stages"]:
            split["launch"] = max(node["seconds"] - inside, 0.0)
        else:
            split["other nodes"] = node["seconds"]
        for group, seconds in split.items():
            phases[group] = phases.get(group, 0.0) + seconds
        rows.append({"node": node["node"], "seconds": node["seconds"],
                     "stages": len(node["stages"]),
                     "not training": node["seconds"] - split.get("train", 0.0)})
    rows.sort(key=lambda row: -row["seconds"])
    return rows, dict(sorted(phases.items(), key=lambda item: -item[1]))
