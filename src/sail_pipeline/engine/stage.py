"""One stage: params -> the trainer's run config -> a DeepSpeed subprocess -> MLflow.

Every stage of every chain trains through `train` (the recipe's nodes, the backbones, the
captioner, every experiment point), so what a stage receives is built in one place,
`run_config`, and a point's identity digests exactly that (`engine.chain.chain_identity`).
No Kedro here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sail_pipeline import lineage
from sail_pipeline.schema import ALL_MODULES, RuntimeParams, TrainParams, get_stage
from sail_pipeline.training.config import RunConfig, TrackingConfig, load_deepspeed_config
from sail_pipeline.training.launcher import launch

log = logging.getLogger(__name__)
# Summary keys worth a metric in the parent run (the stage's own run has the full curves).
_SUMMARY_METRICS = ("final_train_loss", "eval_loss_before", "eval_loss_after", "wall_seconds",
                    "train_samples", "mask_mismatches", "mean_tokens_per_s", "padding_fraction",
                    "steps", "peak_memory_gib")


def _tracking(stage: str, preset: str, seed: int) -> TrackingConfig:
    target = lineage.tracking_target()
    if target is None:
        return TrackingConfig()
    import mlflow

    namespace = lineage.current_namespace.get()
    return TrackingConfig(
        tracking_uri=mlflow.get_tracking_uri(), experiment_id=target[0],
        parent_run_id=target[1], run_name=f"{namespace}.{stage}" if namespace else stage,
        tags={**lineage.git_state(), "sail.stage": stage, "sail.preset": preset,
              "sail.seed": str(seed), **({lineage.INSTANCE_TAG: namespace} if namespace else {})})


# Where a run config says where things are: what an identity replaces with their digests.
PATH_FIELDS = ("output_dir", "train_data", "eval_data", "init_from", "tokenizer_path",
               "llm_path", "vision_path")


def run_config(stage: str, train: TrainParams, runtime: RuntimeParams, workdir: str,
               train_data: str, eval_data: str | None, tracked: bool = True,
               **weights: Any) -> RunConfig:
    """The trainer's input: the stage's settings as validated, plus where things are
    (`tracked=False`: without the MLflow run it logs into, for an identity)."""
    spec = get_stage(stage)
    trainable = train.trainable or (list(spec.trainable) if spec.kind == "vlm"
                                    else list(ALL_MODULES))
    weights = {k: v for k, v in weights.items() if v is not None}
    return RunConfig(kind=spec.kind, stage=stage, output_dir=str(Path(workdir).resolve()),
                     train_data=train_data, eval_data=eval_data, trainable_modules=trainable,
                     train=train, runtime=runtime,
                     deepspeed_config=load_deepspeed_config(train.deepspeed),
                     tracking=(_tracking(stage, weights.get("preset", "-"), runtime.seed)
                               if tracked else TrackingConfig()),
                     **weights)


def train(stage: str, train: TrainParams, runtime: RuntimeParams, workdir: str,
          train_data: str, eval_data: str | None, **weights: Any) -> dict[str, Any]:
    """Train one stage in a DeepSpeed subprocess; returns the pointer the next stage loads."""
    cfg = run_config(stage, train, runtime, workdir, train_data, eval_data, **weights)
    summary = launch(cfg, runtime.launcher)
    if summary.get("dry_run"):
        # The next stage's dry run names this stage's checkpoint where the real run puts it.
        return {"hf_dir": summary["hf_dir"], "run_dir": cfg.output_dir, "summary": summary,
                "dry_run": True}
    log_summary(stage, summary)
    log.info("%s: loss %.4g -> %.4g (eval), %d samples, %.0fs", stage,
             summary.get("eval_loss_before", float("nan")),
             summary.get("eval_loss_after", float("nan")), summary["train_samples"],
             summary["wall_seconds"])
    return {"hf_dir": summary["hf_dir"], "run_dir": summary["run_dir"], "summary": summary}


def log_summary(stage: str, summary: dict[str, Any]) -> None:
    """The stage's summary numbers as metrics of the run it trains in (`<stage>/<key>`); a
    stage reused from the prefix cache logs its stored summary the same way."""
    lineage.log_metrics({f"{stage}/{k}": float(summary[k]) for k in _SUMMARY_METRICS
                         if isinstance(summary.get(k), int | float)})


def trainer_settings(cfg: RunConfig) -> dict[str, Any]:
    """What decides a stage's result among its run config: every setting as the trainer
    receives it (trainable modules and the loaded DeepSpeed config included), no paths."""
    return {k: v for k, v in cfg.fingerprint().items() if k not in PATH_FIELDS}


def from_path(path: str) -> dict[str, Any]:
    """A user's pretrained directory, as the pointer a trained stage would return."""
    return {"hf_dir": path, "run_dir": None, "summary": {"source": "path"}}
