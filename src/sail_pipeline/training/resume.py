"""Resumable checkpoints: a stage's random state, a checkpoint saved whole or not at all, and
the step (and earlier measurements) a re-run continues from, never another config's."""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sail_pipeline.errors import UserError
from sail_pipeline.storage import replace_text, written_whole_or_not_at_all
from sail_pipeline.training.config import RunConfig
from sail_pipeline.training.safe_checkpoint import UnreadableCheckpoint, use_safe_loading

# The entry point's logger: a stage's log reads as one trainer's, whichever module speaks.
log = logging.getLogger("sail_pipeline.train")
FINGERPRINT_FILE = "fingerprint.json"
LATEST_FILE = "latest"


class CheckpointsOfAnotherRun(UserError, RuntimeError):
    """The stage's checkpoint folder was written by a run with another config."""


@dataclass(frozen=True)
class ResumePoint:
    """Where this process starts: step 0, or a checkpoint's step with what the killed process
    measured before it (its evaluation before training, its wall seconds)."""

    step: int = 0
    before: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The global generators' states, as a checkpoint keeps them."""
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    """Put back the generators' states that `rng_state` took."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def resume_or_start(cfg: RunConfig, engine: Any, checkpoints: Path, rank: int) -> ResumePoint:
    """Load the stage's latest checkpoint into `engine`, or, with none, start at step 0 and
    record which config the checkpoints to come belong to."""
    fingerprint = cfg.fingerprint()
    if (checkpoints / LATEST_FILE).exists():
        return _resume(cfg, engine, checkpoints, fingerprint)
    if rank == 0 and cfg.train.save_every:
        checkpoints.mkdir(parents=True, exist_ok=True)
        replace_text(checkpoints / FINGERPRINT_FILE, json.dumps(fingerprint))
    return ResumePoint()


def _resume(cfg: RunConfig, engine: Any, checkpoints: Path, fingerprint: dict[str, Any]
            ) -> ResumePoint:
    fingerprint_file = checkpoints / FINGERPRINT_FILE
    # Compared before loading: another model's shapes would fail inside DeepSpeed with a
    # message that does not say why.
    saved = json.loads(fingerprint_file.read_text()) if fingerprint_file.exists() else None
    if saved != fingerprint:
        raise CheckpointsOfAnotherRun(f"{checkpoints} holds checkpoints of a run with another config; "
                                      f"delete it to start {cfg.stage} afresh")
    use_safe_loading(engine)
    _, client = engine.load_checkpoint(str(checkpoints))
    if client is None:  # DeepSpeed returns (None, None) when the tag's files are missing
        raise UnreadableCheckpoint(
            f"{checkpoints} names the checkpoint {(checkpoints / LATEST_FILE).read_text().strip()!r}, "
            f"whose files are missing or incomplete; delete {checkpoints} to start "
            f"{cfg.stage} afresh")
    step = int(client["step"])
    set_rng_state(client["rng"])
    # What the killed process measured before its checkpoint: the summary and the MLflow
    # run report the whole stage, as an uninterrupted run would.
    resumed = ResumePoint(step, client.get("before", {}), client.get("seconds", 0.0))
    log.info("%s: resumed from %s at step %d", cfg.stage, checkpoints, step)
    return resumed


def save_checkpoint(engine: Any, checkpoints: Path, step: int, rank: int,
                    before: dict[str, float], resumed: ResumePoint, started: float) -> None:
    """Checkpoint `step` (every rank's part), then name it in `latest` (rank 0).

    `started` is when this process started the stage: the checkpoint keeps the seconds the
    stage has worked so far, those of the run it resumed included.
    """
    # A save cut short (a full disk) leaves no tag folder: `latest` still names the
    # previous, whole checkpoint, which a re-run resumes from.
    tag = f"step{step}"
    with written_whole_or_not_at_all(checkpoints / tag, partial=checkpoints / tag):
        engine.save_checkpoint(str(checkpoints), tag=tag, save_latest=False, client_state={
            "step": step, "rng": rng_state(), "before": before,
            "seconds": resumed.seconds + time.perf_counter() - started})
        # DeepSpeed rewrites `latest` in place: a full disk there left it empty, naming
        # no checkpoint at all. Published whole, after every rank's files are written.
        if rank == 0:
            replace_text(checkpoints / LATEST_FILE, tag)
