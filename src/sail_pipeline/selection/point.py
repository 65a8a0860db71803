"""One selection point: a short SFT from a fixed checkpoint on one table, then evaluation.

A point's identity hashes its table (the rows' ids and messages and image digests), its
training and evaluation settings, its seed, the checkpoint and benchmark it starts from and
the code that trains and evaluates. A point whose identity is in the store is loaded, not
trained: the base mixture that composition and incremental evaluation share trains once.
Each point trains in a `.partial` folder renamed when it ends. No Kedro here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
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
    publish,
    stored_result,
)
from sail_pipeline.schema import PointEvaluationParams, RuntimeParams, TrainParams, result_settings

log = logging.getLogger(__name__)

SFT_STAGE = "knowledge"  # the stage registry's entry a point trains as (everything trains)


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


def point_identity(table: pd.DataFrame, seed: int, train: TrainParams,
                   evaluation: PointEvaluationParams, start: StartPoint) -> str:
    payload = {"table": table_identity(table), "seed": seed, "train": result_settings(train),
               "evaluation": result_settings(evaluation), "start": start.digests(),
               "code": code_version()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()
                          ).hexdigest()[:16]


def run_sft_point(label: str, table: pd.DataFrame, seed: int, train: TrainParams,
                  evaluation: PointEvaluationParams, start: StartPoint, runtime: RuntimeParams,
                  store: str | Path) -> dict[str, Any]:
    """The point's result, from the store when its identity is there, else trained now."""
    point_id = point_identity(table, seed, train, evaluation, start)
    stored = stored_result(store, point_id)
    if stored is not None:
        return stored | {"reused": True}
    work = Path(store) / f"{point_id}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.perf_counter()
    table_path = work / "train.parquet"
    table.drop(columns=[c for c in ("source", "n_tokens") if c in table.columns]).to_parquet(
        table_path, index=False)
    log.info("%s: training %d rows (identity %s)", label, len(table), point_id)
    trained = training_node.train(SFT_STAGE, train, runtime.model_copy(update={"seed": seed}),
                                  str(work / "sft"), str(table_path), start.eval_table,
                                  init_from=start.hf_dir)
    scores, eval_seconds = evaluate_checkpoint(trained["hf_dir"], start.benchmark, work / "eval",
                                     evaluation, "sft")
    shutil.rmtree(work / "sft" / "hf", ignore_errors=True)  # the scores are what is reused
    table_path.unlink()
    summary = trained["summary"]
    result = {"identity": point_id, "label": label, "seed": seed, "rows": len(table),
              "tokens": int(table["n_tokens"].sum()) if "n_tokens" in table else None,
              "scores": scores, "loss_after": summary.get("eval_loss_after"),
              "timing": {"train_seconds": float(summary["wall_seconds"]),
                         "eval_seconds": eval_seconds,
                         "total_seconds": time.perf_counter() - started},
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    return publish(work, store, point_id, result, label) | {"reused": False}
