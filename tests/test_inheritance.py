"""Settings are declared once: the experiments' stages and evaluations start from the
recipe's and override only what differs, so `--env gpu` retunes every experiment."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from sail_pipeline import schema
from sail_pipeline.schema import InvalidParameters, ProjectParams
from sail_pipeline.schema.project import deep_merge
from tests.test_gpu_config import _gpu_params
from tests.test_pipelines import micro_params

ROOT = Path(__file__).resolve().parents[1]


def base_params(**overrides: Any) -> ProjectParams:
    """conf/base alone, as plain `kedro run` sees it."""
    tree: dict[str, Any] = {}
    for path in sorted((ROOT / "conf/base").glob("parameters*.yml")):
        tree = deep_merge(tree, yaml.safe_load(path.read_text()) or {})
    return schema.validate_parameters(deep_merge(tree, overrides))


def test_the_sweeps_alignment_lr_follows_the_recipes_unless_the_sweep_sets_it():
    project = base_params(pretrain={"alignment": {"lr": 7e-4}})
    assert project.scaling.alignment.lr == 7e-4
    explicit = base_params(pretrain={"alignment": {"lr": 7e-4}},
                           scaling={"alignment": {"lr": 3e-4}})
    assert explicit.scaling.alignment.lr == 3e-4
    selection = base_params(sft={"knowledge": {"lr": 6e-4}})
    assert selection.selection.train.lr == 6e-4
    # micro's parameters.yml sets the sweep's own micro batch and lr, which win there
    micro = micro_params(pretrain={"alignment": {"lr": 7e-4}})
    assert micro.scaling.alignment.lr != 7e-4
    assert micro.scaling.alignment.micro_batch_size != micro.pretrain.alignment.micro_batch_size


def test_a_budget_written_in_the_experiment_replaces_the_recipes():
    project = micro_params()
    # the recipe's Alignment counts steps; the sweep's passes over the point's pairs
    assert project.pretrain.alignment.steps and project.scaling.alignment.epochs == 1
    assert project.scaling.alignment.steps is None and project.scaling.alignment.tokens is None


def test_evaluations_start_from_the_recipes_evaluation():
    project = micro_params(evaluation={"batch_size": 5})
    for settings in (project.scaling.after_pretrain, project.scaling.after_sft,
                     project.selection.evaluation):
        assert type(settings) is schema.EvaluationSettings
        assert settings.batch_size == 5 and settings.max_new_tokens != 8
    assert project.scaling.after_pretrain.question_types == ["caption"]
    overridden = micro_params(evaluation={"batch_size": 5}, selection={"evaluation": {
        "batch_size": 3}})
    assert overridden.selection.evaluation.batch_size == 3


def test_a_bad_inherited_value_is_named_where_it_is_written():
    with pytest.raises(InvalidParameters, match=r"scaling\.alignment\.lr"):
        micro_params(scaling={"alignment": {"lr": -1}})


def test_env_gpu_retunes_the_sweep_and_the_selection_points(monkeypatch):
    monkeypatch.setenv("SAIL_LLM_PATH", "/models/qwen2.5-1.5b")
    monkeypatch.setenv("SAIL_VIT_PATH", "/models/internvit-300m")
    gpu = schema.validate_parameters(_gpu_params())
    for experiment, recipe in ((gpu.scaling.alignment, gpu.pretrain.alignment),
                               (gpu.scaling.advance, gpu.pretrain.advance),
                               (gpu.scaling.sft, gpu.sft.knowledge),
                               (gpu.selection.train, gpu.sft.knowledge)):
        same = ("lr", "micro_batch_size", "max_seq_len", "deepspeed", "grad_accum",
                "gradient_checkpointing", "lr_scale", "loss_norm")
        assert {k: getattr(experiment, k) for k in same} == \
            {k: getattr(recipe, k) for k in same}
    # the budgets stay the experiments' own
    assert gpu.scaling.alignment.epochs == 1 and gpu.scaling.sft.tokens == 120000
    assert gpu.scaling.alignment.deepspeed == "zero2" and gpu.scaling.alignment.max_seq_len == 4096
    assert gpu.scaling.after_sft.batch_size == gpu.evaluation.batch_size


def test_a_variant_of_the_recipe_leaves_the_experiments_settings_alone():
    """A variant runs the recipe only: its own Alignment lr does not move the sweep's."""
    project = base_params(variants={"slow": {"pretrain": {"alignment": {"lr": 1e-4}}}})
    assert project.variants["slow"].pretrain.alignment.lr == 1e-4
    assert project.variants["slow"].scaling == project.scaling
    assert project.scaling.alignment.lr == project.pretrain.alignment.lr != 1e-4


def test_no_two_schema_classes_share_a_name():
    classes: dict[str, set[str]] = {}
    for module in [getattr(schema, name) for name in dir(schema)
                   if inspect.ismodule(getattr(schema, name))]:
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseModel) \
                    and value.__module__.startswith("sail_pipeline.schema"):
                classes.setdefault(value.__name__, set()).add(value.__module__ + "." + name)
    shared = {name: where for name, where in classes.items() if len(where) > 1}
    assert not shared, shared
