"""The parameter schema: every key the pipelines read, validated before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sail_pipeline.captioning.params import CaptioningParams
from sail_pipeline.curation.params import CurationParams
from sail_pipeline.evaluation.tasks import TASK_TYPES
from sail_pipeline.modeling.presets import PRESETS
from sail_pipeline.recipe_data import StageSizes
from sail_pipeline.training.config import load_deepspeed_config
from sail_pipeline.training.launcher import LauncherConfig
from sail_pipeline.training_params import BackboneParams, TrainParams
from sail_pipeline.world import WorldConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenizerParams(_Strict):
    """`train`: a BPE tokenizer on the world's text; `path`: yours (e.g. Qwen2.5's), local."""

    source: Literal["train", "path"] = "train"
    path: str | None = None
    vocab_size: int = Field(1024, ge=300)

    @model_validator(mode="after")
    def _path_given(self) -> TokenizerParams:
        if self.source == "path" and not self.path:
            raise ValueError("source 'path' needs `path` (a local tokenizer directory)")
        return self


class DataParams(_Strict):
    world: WorldConfig = Field(default_factory=WorldConfig)
    tokenizer: TokenizerParams = Field(default_factory=TokenizerParams)
    stage_sizes: StageSizes = Field(default_factory=StageSizes)
    advance_ocr: bool = True


class PretrainParams(_Strict):
    preset: str = "tiny"
    llm: BackboneParams
    vision: BackboneParams
    alignment: TrainParams
    advance: TrainParams

    @model_validator(mode="after")
    def _known_preset(self) -> PretrainParams:
        if self.preset not in PRESETS:
            raise ValueError(f"preset {self.preset!r} unknown; known: {sorted(PRESETS)}")
        return self


class SftParams(_Strict):
    knowledge: TrainParams
    instruction: TrainParams
    preference: TrainParams


class EvaluationParams(_Strict):
    # `world`: the embedded world's tasks; `real`: the SAIL-VL model card's benchmarks
    # through lmms-eval's bundled tasks (datasets must be in the local Hugging Face cache).
    suite: Literal["world", "real"] = "world"
    real_benchmarks: list[str] | None = None
    checkpoints: list[Literal["alignment", "advance", "knowledge", "instruction",
                              "preference"]] = Field(default_factory=lambda: ["preference"])
    question_types: list[Literal[TASK_TYPES]] | None = None  # type: ignore[valid-type]
    batch_size: int = Field(64, gt=0)
    max_new_tokens: int = Field(8, gt=0)
    limit: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _known_real_benchmarks(self) -> EvaluationParams:
        from sail_pipeline.evaluation.real_suite import select

        select(self.real_benchmarks)  # raises naming unknown ones
        return self


class RuntimeParams(_Strict):
    seed: int = 0
    threads: int = Field(0, ge=0, description="torch threads per process; 0: all cores")
    peak_tflops: float | None = Field(None, gt=0, description="device peak for MFU; default "
                                      "from the GPU's name, none on CPU")
    launcher: LauncherConfig = Field(default_factory=LauncherConfig)


class ProjectParams(_Strict):
    runtime: RuntimeParams = Field(default_factory=RuntimeParams)
    data: DataParams = Field(default_factory=DataParams)
    pretrain: PretrainParams | None = None
    sft: SftParams | None = None
    evaluation: EvaluationParams = Field(default_factory=EvaluationParams)
    curation: CurationParams | None = None
    captioning: CaptioningParams | None = None


class InvalidParameters(ValueError):
    pass


def training_runs(project: ProjectParams) -> dict[str, TrainParams]:
    """Every training run the parameters describe, by its dotted key."""
    runs: dict[str, TrainParams] = {}
    if project.pretrain is not None:
        for name in ("llm", "vision"):
            backbone = getattr(project.pretrain, name)
            if backbone.source == "train" and backbone.train is not None:
                runs[f"pretrain.{name}.train"] = backbone.train
        runs |= {f"pretrain.{s}": getattr(project.pretrain, s) for s in ("alignment", "advance")}
    if project.sft is not None:
        runs |= {f"sft.{s}": getattr(project.sft, s)
                 for s in ("knowledge", "instruction", "preference")}
    captioner = project.captioning.captioner if project.captioning is not None else None
    if captioner is not None and captioner.source == "train" and captioner.train is not None:
        runs["captioning.captioner.train"] = captioner.train
    return runs


def validate_parameters(params: dict, deepspeed_dir: str | Path | None = None) -> ProjectParams:
    """Validate the whole parameter tree; the error lists every bad key by its dotted path.

    With `deepspeed_dir`, every run's DeepSpeed config file is loaded and checked too.
    """
    try:
        project = ProjectParams.model_validate(params)
    except ValidationError as error:
        lines = []
        for item in error.errors():
            key = ".".join(str(part) for part in item["loc"])
            got = f" (got {item['input']!r})" if "input" in item and not isinstance(
                item["input"], dict) else ""
            lines.append(f"  {key}: {item['msg']}{got}")
        raise InvalidParameters("invalid parameters:\n" + "\n".join(lines)) from None
    if deepspeed_dir is not None:
        problems = []
        for key, run in training_runs(project).items():
            try:
                load_deepspeed_config(run.deepspeed, deepspeed_dir)
            except (FileNotFoundError, ValueError) as error:
                problems.append(f"  {key}.deepspeed: {error}")
        if problems:
            raise InvalidParameters("invalid parameters:\n" + "\n".join(problems))
    return project
