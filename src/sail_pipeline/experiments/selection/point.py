"""One selection point as a chain: a short SFT from a fixed checkpoint, then evaluation.

A point's SFT is one or more phases (a stage each, the next starting from the last one's
weights): one for most experiments, the curriculum's stages for `schedule`. The engine runs it
and stores it by the chain's identity, so a point whose identity is in the store is loaded,
not trained: the base mixture that composition and incremental evaluation share trains once.
No Kedro here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sail_pipeline.engine.chain import Chain, Checkpoint, Evaluation, Step, Table
from sail_pipeline.engine.experiment import Point, run_point
from sail_pipeline.experiments.selection.experiments import Phase
from sail_pipeline.schema import SFT_STAGES, EvaluationSettings, RuntimeParams, TrainParams

# Columns a candidate table carries for the experiments' accounting, not for training.
_ACCOUNTING = ("source", "n_tokens")


@dataclass(frozen=True)
class StartPoint:
    """What every point of a selection run starts from and is scored on."""

    hf_dir: str
    benchmark: str
    eval_table: str


def sft_chain(phases: list[Phase], seed: int, evaluation: EvaluationSettings,
              start: StartPoint) -> Chain:
    """The phases in order from the start checkpoint, the last one evaluated."""
    steps = [Step(phase.stage, phase.train,
                  Table(rows=phase.table.drop(columns=[c for c in _ACCOUNTING
                                                       if c in phase.table.columns])),
                  Table(path=start.eval_table), name=f"sft_{k}_{phase.stage}")
             for k, phase in enumerate(phases)]
    return Chain(Checkpoint(start.hf_dir), steps, seed,
                 evaluations=(Evaluation(len(steps) - 1, "sft", start.benchmark, evaluation),))


@dataclass(frozen=True)
class SftPoints:
    """Makes the engine's points of a selection experiment: SFT from `start`, `train`'s
    settings (unless the point gives its own), scored with `evaluation`."""

    start: StartPoint
    evaluation: EvaluationSettings
    train: TrainParams
    stage: str = SFT_STAGES[0]  # what a one-table point trains as

    def __call__(self, label: str, table: pd.DataFrame | list[Phase], seed: int, /,
                 train: TrainParams | None = None, **fields: Any) -> Point:
        phases = table if isinstance(table, list) else \
            [Phase(self.stage, train or self.train, table)]
        if not phases:
            raise ValueError(f"{label}: a point needs at least one phase")
        rows = sum(len(p.table) for p in phases)
        tokens = [int(p.table["n_tokens"].sum()) for p in phases if "n_tokens" in p.table]
        sources = sorted({s for p in phases for s in p.table["source"].unique()}) \
            if all("source" in p.table for p in phases) else []

        def describe(outcome) -> dict[str, Any]:
            return {"label": label, "seed": seed, "rows": rows,
                    "stages": [p.stage for p in phases],
                    "tokens": sum(tokens) if len(tokens) == len(phases) else None,
                    "loss_after": outcome.last["summary"].get("eval_loss_after")}

        # The scores are what is reused: no checkpoint is kept.
        return Point(label, sft_chain(phases, seed, self.evaluation, self.start), fields,
                     keep="none", describe=describe,
                     tags={"rows": rows, "stages": "+".join(p.stage for p in phases),
                           "sources": "+".join(sources)})


def run_sft_point(label: str, phases: list[Phase], seed: int, evaluation: EvaluationSettings,
                  start: StartPoint, runtime: RuntimeParams, store: str | Path
                  ) -> dict[str, Any]:
    """One point's result, from the store when its identity is there, else trained now."""
    if not phases:
        raise ValueError(f"{label}: a point needs at least one phase")
    make = SftPoints(start, evaluation, phases[0].train)
    return run_point(make(label, phases, seed), runtime, store)
