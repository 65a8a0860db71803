"""Every parameter model, at the bottom of the import graph.

Importing this package loads pydantic and nothing heavy (no torch, transformers, DeepSpeed,
pandas or Pillow; tests/test_schema.py checks), so validating parameters is fast and every
other module can import the models it takes. See `schema.base` for what *params* and
*config* mean.
"""

from sail_pipeline.schema.base import RESULT_NEUTRAL, StrictModel, neutral, result_settings
from sail_pipeline.schema.captioning import (
    CAPTION_PROMPT,
    RECAPTION_PROMPT,
    ApiParams,
    CaptionerParams,
    CaptioningParams,
    CaptionStorageParams,
    PoolRecaptionParams,
    PromptKind,
    RecaptionParams,
    ReferenceCaptionParams,
)
from sail_pipeline.schema.curation import (
    CurationFilterParams,
    CurationParams,
    FolderSource,
    LlavaSource,
    ParquetSource,
    SourceSpec,
    WebDatasetSource,
    WorldSource,
    check_unique_names,
)
from sail_pipeline.schema.data import DataParams, StageSizeParams, TokenizerParams
from sail_pipeline.schema.evaluation import EvaluationParams, EvaluationSettings
from sail_pipeline.schema.executor import ExecutorKind, ExecutorParams
from sail_pipeline.schema.project import (
    InvalidParameters,
    PretrainParams,
    ProjectParams,
    SftParams,
    deep_merge,
    format_problems,
    training_runs,
    validate_parameters,
)
from sail_pipeline.schema.runtime import LauncherParams, PointExecutorParams, RuntimeParams
from sail_pipeline.schema.scaling import (
    SCALING_VARIANTS,
    ScalingParams,
    ScalingVariant,
)
from sail_pipeline.schema.sft import (
    ALL_IN_ONE,
    CANDIDATES,
    GROUPS,
    HARMFUL_CANDIDATES,
    CandidateSetParams,
    CandidateSpec,
    MixtureParams,
)
from sail_pipeline.schema.stages import (
    ALL_MODULES,
    BACKBONES,
    CHAIN_PIPELINES,
    PRETRAIN_STAGES,
    RECIPE,
    SFT_STAGES,
    STAGES,
    ModuleKey,
    StageSpec,
    get_stage,
)
from sail_pipeline.schema.statistics import StatisticsParams
from sail_pipeline.schema.training import BackboneParams, TrainParams
from sail_pipeline.schema.world import WorldParams

__all__ = [
    "ALL_IN_ONE",
    "CANDIDATES",
    "CHAIN_PIPELINES",
    "GROUPS",
    "HARMFUL_CANDIDATES",
    "CandidateSetParams",
    "CandidateSpec",
    "MixtureParams",
    "ALL_MODULES",
    "BACKBONES",
    "CAPTION_PROMPT",
    "PRETRAIN_STAGES",
    "RECAPTION_PROMPT",
    "RECIPE",
    "RESULT_NEUTRAL",
    "SCALING_VARIANTS",
    "SFT_STAGES",
    "STAGES",
    "ApiParams",
    "BackboneParams",
    "CaptionStorageParams",
    "CaptionerParams",
    "CaptioningParams",
    "CurationFilterParams",
    "CurationParams",
    "DataParams",
    "EvaluationParams",
    "EvaluationSettings",
    "ExecutorKind",
    "ExecutorParams",
    "FolderSource",
    "InvalidParameters",
    "LauncherParams",
    "PointExecutorParams",
    "LlavaSource",
    "ModuleKey",
    "ParquetSource",
    "PoolRecaptionParams",
    "PretrainParams",
    "ProjectParams",
    "PromptKind",
    "RecaptionParams",
    "ReferenceCaptionParams",
    "RuntimeParams",
    "ScalingParams",
    "ScalingVariant",
    "SftParams",
    "SourceSpec",
    "StageSizeParams",
    "StageSpec",
    "StatisticsParams",
    "StrictModel",
    "TokenizerParams",
    "TrainParams",
    "WebDatasetSource",
    "WorldParams",
    "WorldSource",
    "check_unique_names",
    "deep_merge",
    "format_problems",
    "get_stage",
    "neutral",
    "result_settings",
    "training_runs",
    "validate_parameters",
]
