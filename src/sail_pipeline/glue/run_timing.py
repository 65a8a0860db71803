"""Where a `kedro run`'s wall time and memory go: per node, and per phase inside each training
stage.

`NodeTimingHook` (hooks.py) times every node and picks up the phases that each training
stage reports in its summary (`training.telemetry.PhaseClock`). It saves one record per run
(the catalog's `run_timing`). `breakdown` turns a record into the two tables that
`tools/run_breakdown.py` prints and plots. The numbers are the run's own telemetry, not a
stopwatch around it.

Memory: each node records the peak resident memory of the Kedro process while it ran
(`peak_rss_mb`: the kernel's high-water mark, reset when the node starts), and each training
stage the peak of its own trainer process (`summary["peak_rss_mb"]`, read in that process).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from sail_pipeline.process_stats import peak_rss_mb, reset_peak_rss

# The trainer's phases, grouped the way the README's breakdown reads them.
PHASE_GROUPS = {
    "imports": "import", "rendezvous": "start-up", "model": "start-up", "data": "data",
    "engine": "start-up", "tracking": "tracking", "eval": "eval", "train": "train",
    "checkpoint": "save", "save": "save",
}


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
        # Until a node starts, the peak is Kedro's own start-up (catalog, imports, hooks).
        self.startup_peak_rss_mb: float | None = None
        # False where the high-water mark cannot be reset: a node's peak is then the
        # process's so far, an upper bound.
        self.per_node_peaks = True

    def pipeline_start(self) -> None:
        self.pipeline_started = time.time()

    def node_start(self, name: str) -> None:
        if self.startup_peak_rss_mb is None:
            self.startup_peak_rss_mb = peak_rss_mb()
        self.per_node_peaks = reset_peak_rss() and self.per_node_peaks
        self._open[name] = time.time()

    def node_end(self, name: str, namespace: str | None, outputs: dict[str, Any]) -> None:
        started = self._open.pop(name, None)
        if started is None:
            return
        self.nodes.append({
            "node": name, "namespace": namespace, "seconds": round(time.time() - started, 3),
            "started_at": round(started - self.process_started, 3),
            "peak_rss_mb": peak_rss_mb(),
            "stages": [{"stage": s["stage"], "phases": s["phases"],
                        "seconds_to_first_step": s.get("seconds_to_first_step"),
                        "peak_rss_mb": s.get("peak_rss_mb")}
                       for s in training_summaries(outputs)]})

    def record(self) -> dict[str, Any]:
        now = time.time()
        ran = sum(n["seconds"] for n in self.nodes)
        before = (self.pipeline_started or now) - self.process_started
        kedro_peaks = [self.startup_peak_rss_mb or peak_rss_mb()] + [
            n["peak_rss_mb"] for n in self.nodes]
        trainer_peaks = [s["peak_rss_mb"] for n in self.nodes for s in n["stages"]
                         if s.get("peak_rss_mb") is not None]
        return {"wall_seconds": round(now - self.process_started, 3),
                "kedro_startup_seconds": round(before, 3),
                "between_nodes_seconds": round(now - self.process_started - before - ran, 3),
                "peak_rss_mb": {"kedro": max(kedro_peaks),
                                "trainer": max(trainer_peaks, default=None),
                                "per_node": self.per_node_peaks},
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
        trainer_peaks = [s["peak_rss_mb"] for s in node["stages"]
                         if s.get("peak_rss_mb") is not None]
        rows.append({"node": node["node"], "seconds": node["seconds"],
                     "stages": len(node["stages"]),
                     "not training": node["seconds"] - split.get("train", 0.0),
                     # absent in records written before memory was recorded
                     "peak_rss_mb": node.get("peak_rss_mb"),
                     "trainer_peak_rss_mb": max(trainer_peaks, default=None)})
    rows.sort(key=lambda row: -row["seconds"])
    return rows, dict(sorted(phases.items(), key=lambda item: -item[1]))
