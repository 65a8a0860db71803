"""One selection point: a short SFT from a fixed checkpoint, then evaluation.

A point's SFT is one or more phases (a stage each, the next starting from the last one's
weights): one for most experiments, the curriculum's stages for `schedule`. Its identity
hashes each phase's table (the rows' ids and messages and image digests) and settings, its
evaluation settings, its seed, the checkpoint and benchmark it starts from and the code that
trains and evaluates. A point whose identity is in the store is loaded, not trained: the base
mixture that composition and incremental evaluation share trains once. Each point trains in a
`.partial` folder renamed when it ends. No Kedro here.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sail_pipeline.pipelines import training_node
from sail_pipeline.scaling.point import (
    code_version,
    evaluate_checkpoint,
    path_digest,
    payload_digest,
    publish,
    stored_result,
    work_folder,
)
from sail_pipeline.schema import PointEvaluationParams, RuntimeParams, result_settings
from sail_pipeline.selection.experiments import Phase

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class StartPoint:
    """What every point of a selection run starts from and is scored on."""

    hf_dir: str
    benchmark: str
    eval_table: str

    def digests(self) -> dict[str, str]:
        return {"weights": path_digest(self.hf_dir), "benchmark": path_digest(self.benchmark),
                "eval_table": path_digest(self.eval_table)}


def table_identity(table: pd.DataFrame) -> str:
    """A digest of what a table teaches: ids, conversations and images, in order."""
    digest = hashlib.sha256()
    for row in table[["id", "messages", "image"]].itertuples(index=False):
        image = hashlib.sha256(row.image).hexdigest()[:16] if isinstance(row.image, bytes) else ""
        digest.update(f"{row.id}\t{row.messages}\t{image}\n".encode())
    return digest.hexdigest()[:16]


def point_identity(phases: list[Phase], seed: int, evaluation: PointEvaluationParams,
                   start: StartPoint) -> str:
    payload = {"phases": [{"stage": p.stage, "table": table_identity(p.table),
                           "train": result_settings(p.train)} for p in phases],
               "seed": seed, "evaluation": result_settings(evaluation),
               "start": start.digests(), "code": code_version()}
    return payload_digest(payload)


def run_sft_point(label: str, phases: list[Phase], seed: int,
                  evaluation: PointEvaluationParams, start: StartPoint, runtime: RuntimeParams,
                  store: str | Path) -> dict[str, Any]:
    """The point's result, from the store when its identity is there, else trained now."""
    if not phases:
        raise ValueError(f"{label}: a point needs at least one phase")
    point_id = point_identity(phases, seed, evaluation, start)
    stored = stored_result(store, point_id)
    if stored is not None:
        return stored | {"reused": True}
    work = work_folder(store, point_id)
    started = time.perf_counter()
    weights, train_seconds, summary = start.hf_dir, 0.0, {}
    for k, phase in enumerate(phases):
        table_path = work / f"train_{k}.parquet"
        phase.table.drop(columns=[c for c in ("source", "n_tokens") if c in phase.table.columns]
                         ).to_parquet(table_path, index=False)
        log.info("%s: %s, training %d rows (identity %s)", label, phase.stage, len(phase.table),
                 point_id)
        trained = training_node.train(phase.stage, phase.train,
                                      runtime.model_copy(update={"seed": seed}),
                                      str(work / f"sft_{k}_{phase.stage}"), str(table_path),
                                      start.eval_table, init_from=weights)
        if k:  # the previous phase's weights are read; only the last one's are evaluated
            shutil.rmtree(weights, ignore_errors=True)
        weights, summary = trained["hf_dir"], trained["summary"]
        train_seconds += float(summary["wall_seconds"])
        table_path.unlink()
    scores, eval_seconds = evaluate_checkpoint(weights, start.benchmark, work / "eval",
                                               evaluation, "sft")
    for folder in work.glob("sft_*"):  # the scores are what is reused
        shutil.rmtree(folder / "hf", ignore_errors=True)
    rows = sum(len(p.table) for p in phases)
    tokens = [int(p.table["n_tokens"].sum()) for p in phases if "n_tokens" in p.table]
    result = {"identity": point_id, "label": label, "seed": seed, "rows": rows,
              "stages": [p.stage for p in phases],
              "tokens": sum(tokens) if len(tokens) == len(phases) else None,
              "scores": scores, "loss_after": summary.get("eval_loss_after"),
              "timing": {"train_seconds": train_seconds, "eval_seconds": eval_seconds,
                         "total_seconds": time.perf_counter() - started},
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    return publish(work, store, point_id, result, label) | {"reused": False}
