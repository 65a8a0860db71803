"""Progress of an experiment's points: one line per point done, and counts in MLflow.

A long sweep prints, as each point ends,

    [12/30] reference N=400 seed=1: trained in 14s · 18 left, about 4 min

and keeps the counts on the experiment's MLflow run as metrics (`progress/<name>/done`,
`.../running`, `.../failed`, `.../reused`, with the number of points done as the step, so
their chart is the sweep's progress) and as the tag `sail.progress.<name>`
("12 of 30 done (3 reused), 1 running, 0 failed"), which the run's page shows. The estimate
is the wall time so far per point done, times the points left. No Kedro here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


def duration(seconds: float) -> str:
    """`14s`, `4 min`, `1 h 05 min`: as a person reads an estimate."""
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


@dataclass
class PointProgress:
    """Counts of one experiment's points; `total` None when the grid decides as it goes."""

    name: str
    total: int | None = None
    run_id: str | None = None  # the MLflow run that shows the counts (None: not tracked)
    say: Callable[[str], None] = print
    done: int = 0
    failed: int = 0
    reused: int = 0
    running: int = 0
    started: float = field(default_factory=time.perf_counter)

    def start(self, label: str) -> None:
        self.running += 1
        self._track()

    def finish(self, label: str, seconds: float | None, reused: bool = False,
               error: str | None = None) -> str:
        """Count the point and print its line; returns the line."""
        self.running = max(0, self.running - 1)
        self.done += 1
        self.failed += error is not None
        self.reused += reused
        what = (f"failed: {error.strip().splitlines()[-1][:160]}" if error else
                "reused" if reused else f"trained in {duration(seconds or 0.0)}")
        line = f"[{self.done}/{self.total}] " if self.total else f"[{self.done}] "
        line += f"{label}: {what}"
        if self.total:
            left = self.total - self.done
            elapsed = time.perf_counter() - self.started
            line += (f" · {left} left, about {duration(elapsed / self.done * left)}" if left
                     else f" · all {self.total} done in {duration(elapsed)}")
        self.say(line)
        self._track()
        return line

    def record(self, label: str, result: dict) -> str:
        """Count a point from its result (a store result, or a sweep's failed-point record
        with `failed` and `error`) and print its line."""
        return self.finish(label, result.get("timing", {}).get("total_seconds"),
                           reused=bool(result.get("reused")),
                           error=result.get("error") if result.get("failed") else None)

    def summary(self) -> str:
        return (f"{self.done}{f' of {self.total}' if self.total else ''} done "
                f"({self.reused} reused), {self.running} running, {self.failed} failed")

    def _track(self) -> None:
        if self.run_id is None:
            return
        try:
            from mlflow import MlflowClient
            from mlflow.entities import Metric, RunTag

            now = int(time.time() * 1000)
            prefix = f"progress/{self.name}"
            MlflowClient().log_batch(self.run_id, metrics=[
                Metric(f"{prefix}/{key}", float(value), now, self.done)
                for key, value in (("done", self.done), ("running", self.running),
                                   ("failed", self.failed), ("reused", self.reused))],
                tags=[RunTag(f"sail.progress.{self.name}", self.summary())])
        except Exception as error:  # noqa: BLE001 - progress must never stop a sweep
            log.warning("could not log %s's progress to MLflow: %s", self.name, error)
            self.run_id = None
