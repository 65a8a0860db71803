"""Recipe stage nodes: each trains one stage of the registry, starting where the last ended."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sail_pipeline.pipelines import training_node
from sail_pipeline.schema import RuntimeParams, TrainParams, get_stage


def train_first_stage(train: str, evaluation: str, tokenizer: str, llm: dict, vision: dict,
                      settings: TrainParams, preset: str, runtime: RuntimeParams, workdir: str,
                      *, stage: str) -> dict[str, Any]:
    """A stage that starts from the backbones: a new VLM of `preset` (Pretrain-Alignment)."""
    return training_node.train(stage, settings, runtime, workdir, train, evaluation,
                               preset=preset, tokenizer_path=tokenizer,
                               llm_path=llm["hf_dir"], vision_path=vision["hf_dir"])


def train_next_stage(train: str, evaluation: str, previous: dict, settings: TrainParams,
                     runtime: RuntimeParams, workdir: str, *, stage: str) -> dict[str, Any]:
    """A stage that continues the previous stage's checkpoint."""
    return training_node.train(stage, settings, runtime, workdir, train, evaluation,
                               init_from=previous["hf_dir"])


def stage_node_function(stage: str) -> Callable[..., dict[str, Any]]:
    """The node function of one stage, named `train_<stage>` (what Kedro and kedro-viz show)."""
    spec = get_stage(stage)
    base = train_next_stage if spec.starts_from else train_first_stage

    def run(*args: Any) -> dict[str, Any]:
        return base(*args, stage=stage)

    run.__name__ = run.__qualname__ = f"train_{stage}"
    run.__doc__ = spec.description
    return run
