"""One sweep point: its identity, and pretraining -> evaluation -> fixed SFT -> evaluation.

A point's identity hashes everything that decides its result: its pairs (ids, captions and
image digests), its settings, its seed, the weights and tables it starts from, and the code
that trains and evaluates. A point whose identity is in the store is loaded, not retrained:
extending a grid trains only the new points, and re-running a sweep takes seconds.

The point trains in a `.partial` folder that is renamed when it ends, so a crashed or
concurrent run never leaves a half point that looks finished. No Kedro here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

import sail_pipeline
from sail_pipeline.errors import UserError
from sail_pipeline.lineage import table_digest
from sail_pipeline.pipelines import training_node
from sail_pipeline.recipe_data import caption_table
from sail_pipeline.scaling.plan import Point
from sail_pipeline.schema import (
    SCALING_VARIANTS,
    PointEvaluationParams,
    RuntimeParams,
    ScalingParams,
    result_settings,
)

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
# The code a point's result depends on: changing any file here retrains every point.
_CODE = ("training", "modeling", "evaluation", "recipe_data.py", "scaling/point.py")
_SFT_STAGE = "knowledge"


@dataclass(frozen=True)
class SharedInputs:
    """What every point of a sweep starts from: backbones, tokenizer, and shared tables."""

    tokenizer: str
    llm: str
    vision: str
    benchmark: str
    alignment_eval: str
    advance_eval: str
    sft_train: str
    sft_eval: str

    def digests(self) -> dict[str, str]:
        return {name: path_digest(path) for name, path in asdict(self).items()}


@lru_cache(maxsize=64)
def _cached_digest(path: str, size: int, mtime: float) -> str:
    target = Path(path)
    if target.is_file():
        return table_digest(target)
    digest = hashlib.sha256()
    for file in sorted(p for p in target.rglob("*") if p.is_file()):
        digest.update(file.relative_to(target).as_posix().encode())
        digest.update(table_digest(file).encode())
    return digest.hexdigest()[:16]


def path_digest(path: str) -> str:
    stat = Path(path).stat()
    return _cached_digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime)


@lru_cache(maxsize=1)
def code_version() -> str:
    """sha256 of the source that trains and evaluates a point (first 16 hex digits)."""
    root = Path(sail_pipeline.__file__).parent
    digest = hashlib.sha256()
    for part in _CODE:
        files = [root / part] if (root / part).is_file() else sorted((root / part).rglob("*.py"))
        for file in files:
            digest.update(file.relative_to(root).as_posix().encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def payload_digest(payload: Any) -> str:
    """A short, stable digest of a JSON-able payload: the identity of a stored point."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()
                          ).hexdigest()[:16]


def point_settings(point: Point, params: ScalingParams, preset: str) -> dict[str, Any]:
    """Everything but the data that decides a point's result (what a stale result differs in)."""
    variant = SCALING_VARIANTS[point.variant]
    return {
        "variant": {k: v for k, v in asdict(variant).items() if k != "description"},
        "n": point.n, "seed": point.seed, "preset": preset, "sft_samples": params.sft_samples,
        **{name: result_settings(getattr(params, name))
           for name in ("alignment", "advance", "sft", "after_pretrain", "after_sft")},
        "code": code_version(),
    }


def settings_digest(point: Point, params: ScalingParams, preset: str) -> str:
    return payload_digest(point_settings(point, params, preset))


def identity(point: Point, pairs: pd.DataFrame, image_digests: pd.Series,
             params: ScalingParams, shared: SharedInputs, preset: str) -> str:
    """The point's identity: settings, seed, code, its pairs and the inputs it starts from."""
    data = hashlib.sha256()
    for pair_id, caption in zip(pairs["id"], pairs["caption"], strict=True):
        data.update(f"{pair_id}\t{caption}\t{image_digests.get(pair_id, '')}\n".encode())
    return payload_digest({"settings": point_settings(point, params, preset),
                  "pairs": data.hexdigest(), "inputs": shared.digests()})


def stored_result(store: str | Path, point_id: str) -> dict[str, Any] | None:
    """The finished result of the point with this identity, or None."""
    path = Path(store) / point_id / RESULT_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (ValueError, OSError) as error:
        raise DamagedPoint(f"{path} cannot be read ({type(error).__name__}: {error}); delete "
                           f"{path.parent} and run again to train that point anew") from error


class DamagedPoint(UserError, ValueError):
    """A stored point's result that cannot be read."""


def evaluate_checkpoint(hf_dir: str, benchmark: str, workdir: Path, settings: PointEvaluationParams,
              phase: str) -> tuple[dict[str, float], float]:
    from sail_pipeline.evaluation.runner import run_world_suite

    started = time.perf_counter()
    report = run_world_suite(hf_dir, benchmark, workdir, question_types=settings.question_types,
                             batch_size=settings.batch_size,
                             max_new_tokens=settings.max_new_tokens, limit=settings.limit)
    scores = {f"{phase}/{task.removeprefix('world_')}": float(score)
              for task, score in report.scores.items()}
    scores[f"{phase}/average"] = float(report.average)
    return scores, time.perf_counter() - started


def _stage_tables(point: Point, pairs: pd.DataFrame, images: pd.Series, folder: Path
                  ) -> dict[str, str]:
    """The point's pretraining tables: all pairs for Alignment alone; else disjoint halves
    (even positions Alignment, odd Advance), which keeps them nested across N."""
    stages = SCALING_VARIANTS[point.variant].stages
    scenes = pairs.assign(image=images.loc[pairs["id"]].to_numpy())
    parts = ({stages[0]: scenes} if len(stages) == 1
             else {stages[0]: scenes.iloc[0::2], stages[1]: scenes.iloc[1::2]})
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for offset, (stage, part) in enumerate(parts.items()):
        table = caption_table(part.reset_index(drop=True), "caption", point.seed + offset)
        paths[stage] = str(folder / f"{stage}_train.parquet")
        table.to_parquet(paths[stage], index=False)
    return paths


def run_point(point: Point, pairs: pd.DataFrame, images: pd.Series, params: ScalingParams,
              shared: SharedInputs, runtime: RuntimeParams, preset: str, store: str | Path,
              point_id: str) -> dict[str, Any]:
    """Train and evaluate one point into `store/<point_id>/`; returns its result."""
    work = work_folder(store, point_id)
    runtime = runtime.model_copy(update={"seed": point.seed})
    variant = SCALING_VARIANTS[point.variant]
    started = time.perf_counter()
    timing: dict[str, float] = {}

    tables = _stage_tables(point, pairs, images, work / "tables")
    stage_summaries: dict[str, dict[str, Any]] = {}
    previous: dict[str, Any] | None = None
    for stage in variant.stages:
        eval_data = shared.alignment_eval if stage == "alignment" else shared.advance_eval
        settings = getattr(params, stage)
        if variant.recipe_modules:
            settings = settings.model_copy(update={"trainable": None})
        begun = time.perf_counter()
        if previous is None:
            previous = training_node.train(
                stage, settings, runtime, str(work / stage), tables[stage], eval_data,
                preset=preset, tokenizer_path=shared.tokenizer, llm_path=shared.llm,
                vision_path=shared.vision)
        else:
            previous = training_node.train(stage, settings, runtime, str(work / stage),
                                           tables[stage], eval_data,
                                           init_from=previous["hf_dir"])
        timing[f"{stage}_seconds"] = time.perf_counter() - begun
        timing[f"{stage}_train_seconds"] = float(previous["summary"]["wall_seconds"])
        stage_summaries[stage] = previous["summary"]
    assert previous is not None

    scores, timing["eval_pretrain_seconds"] = evaluate_checkpoint(
        previous["hf_dir"], shared.benchmark, work / "eval_pretrain", params.after_pretrain,
        "pretrain")
    begun = time.perf_counter()
    sft = training_node.train(_SFT_STAGE, params.sft, runtime, str(work / "sft"),
                              shared.sft_train, shared.sft_eval, init_from=previous["hf_dir"])
    timing["sft_seconds"] = time.perf_counter() - begun
    timing["sft_train_seconds"] = float(sft["summary"]["wall_seconds"])
    stage_summaries["sft"] = sft["summary"]
    after_sft, timing["eval_sft_seconds"] = evaluate_checkpoint(
        sft["hf_dir"], shared.benchmark, work / "eval_sft", params.after_sft, "sft")
    scores |= after_sft
    timing["total_seconds"] = time.perf_counter() - started

    if not params.keep_intermediate:
        # What the result needs is in result.json and the final checkpoint; the training
        # tables repeat the pool's images, and the pretraining checkpoints are not loaded again.
        shutil.rmtree(work / "tables", ignore_errors=True)
        for stage in variant.stages:
            shutil.rmtree(work / stage / "hf", ignore_errors=True)
    result = {
        "identity": point_id, "settings_digest": settings_digest(point, params, preset),
        "namespace": point.namespace, "variant": point.variant, "n": point.n,
        "seed": point.seed, "caption_source": variant.captions, "filtered": variant.filtered,
        "expansion": variant.expansion, "stages": list(variant.stages),
        "tokens": int(sum(stage_summaries[s].get("epoch_tokens") or 0 for s in variant.stages)),
        "scores": scores, "timing": timing,
        "losses": {stage: {"before": s.get("eval_loss_before"), "after": s.get("eval_loss_after")}
                   for stage, s in stage_summaries.items()},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    return publish(work, store, point_id, result, point.label)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def work_folder(store: str | Path, point_id: str) -> Path:
    """A fresh `.partial-<pid>` folder for this process's run of the point, after removing
    the unfinished folders of killed runs of it (their pid is gone), saying so."""
    for stale in Path(store).glob(f"{point_id}.partial-*"):
        pid = stale.name.rpartition("-")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
            log.info("point %s: removed the unfinished work of a killed run (pid %s); it "
                     "trains again from the start", point_id, pid)
    work = Path(store) / f"{point_id}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


def publish(work: Path, store: str | Path, point_id: str, result: dict[str, Any],
            label: str) -> dict[str, Any]:
    """Write `result` into the point's `.partial` folder and rename it into the store, so a
    killed run never leaves a half point that looks finished; the stored result wins when
    another process finished the same point first (it is as good as ours)."""
    (work / RESULT_FILE).write_text(json.dumps(result, indent=2))
    try:
        os.replace(work, Path(store) / point_id)
    except OSError:
        log.warning("point %s finished twice; keeping the first", label)
        shutil.rmtree(work, ignore_errors=True)
        return stored_result(store, point_id) or result
    return result
