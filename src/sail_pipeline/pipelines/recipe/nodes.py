"""Recipe stage nodes: each trains one stage of the registry, starting where the last ended."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sail_pipeline.engine.chain import Backbones, Chain, Checkpoint, Step, Table, run_chain
from sail_pipeline.schema import RuntimeParams, TrainParams, get_stage

log = logging.getLogger(__name__)


def train_first_stage(train: str, evaluation: str, tokenizer: str, llm: dict, vision: dict,
                      settings: TrainParams, preset: str, runtime: RuntimeParams, workdir: str,
                      *, stage: str) -> dict[str, Any]:
    """A stage that starts from the backbones: a new VLM of `preset` (Pretrain-Alignment)."""
    return _one_stage(Backbones(preset, tokenizer, llm["hf_dir"], vision["hf_dir"]), stage,
                      settings, train, evaluation, runtime, workdir)


def train_next_stage(train: str, evaluation: str, previous: dict, settings: TrainParams,
                     runtime: RuntimeParams, workdir: str, *, stage: str) -> dict[str, Any]:
    """A stage that continues the previous stage's checkpoint."""
    return _one_stage(Checkpoint(previous["hf_dir"]), stage, settings, train, evaluation,
                      runtime, workdir)


def _one_stage(start: Backbones | Checkpoint, stage: str, settings: TrainParams, train: str,
               evaluation: str, runtime: RuntimeParams, workdir: str) -> dict[str, Any]:
    """The engine's chain of one stage, into the catalog's working folder for it."""
    chain = Chain(start, [Step(stage, settings, Table(path=train), Table(path=evaluation))],
                  runtime.seed)
    return run_chain(chain, runtime, workdir, folders=[workdir]).last


def train_all_in_one(train: str, evaluation: str, previous: dict, sft: Any,
                     runtime: RuntimeParams, workdir: str, *, stage: str) -> dict[str, Any]:
    """`sft.schedule: all_in_one`: one stage on every SFT mixture at once, with the budgets of
    all the SFT stages (the first stage's other settings)."""
    settings = sft.all_in_one()
    budget = {k: getattr(settings, k) for k in ("tokens", "steps") if getattr(settings, k)}
    log.info("all_in_one: %s trains the union of the SFT mixtures, budget %s", stage, budget)
    return train_next_stage(train, evaluation, previous, settings, runtime, workdir, stage=stage)


def stage_node_function(stage: str, all_in_one: bool = False) -> Callable[..., dict[str, Any]]:
    """The node function of one stage, named `train_<stage>` (what Kedro and kedro-viz show)."""
    spec = get_stage(stage)
    base = train_next_stage if spec.starts_from else train_first_stage
    if all_in_one:
        base = train_all_in_one

    def run(*args: Any) -> dict[str, Any]:
        return base(*args, stage=stage)

    run.__name__ = run.__qualname__ = f"train_{stage}"
    run.__doc__ = spec.description
    return run


def pass_through_node_function(stage: str) -> Callable[[dict], dict[str, Any]]:
    """A stage that `all_in_one` folded into the first SFT stage: the previous checkpoint."""

    def run(previous: dict) -> dict[str, Any]:
        log.info("%s: not trained (sft.schedule all_in_one); passing on %s", stage,
                 previous["hf_dir"])
        return {**previous, "summary": {**previous.get("summary", {}), "passed_through": stage}}

    run.__name__ = run.__qualname__ = f"pass_through_{stage}"
    return run
