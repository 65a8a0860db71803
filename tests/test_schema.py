"""The parameter schema: light to import, each setting declared once, validated once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sail_pipeline.schema import (
    PRETRAIN_STAGES,
    RECIPE,
    STAGES,
    InvalidParameters,
    RuntimeParams,
    TrainParams,
    result_settings,
    validate_parameters,
)
from sail_pipeline.training.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "deepspeed", "pandas", "PIL", "numpy", "mlflow", "kedro")


def test_importing_the_schema_loads_nothing_heavy():
    code = ("import sys, sail_pipeline.schema; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]", f"importing sail_pipeline.schema loaded {loaded}"


def test_a_field_added_to_train_params_reaches_the_trainer_with_no_other_edit(tmp_path):
    """Copy the package, add one field to TrainParams (and nothing else), then build a stage's
    run config through the training node and read it back as the trainer does."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "sail_pipeline", src / "sail_pipeline",
                    ignore=shutil.ignore_patterns("__pycache__"))
    schema = src / "sail_pipeline" / "schema" / "training.py"
    text = schema.read_text()
    anchor = "    grad_clip: float = Field(1.0, gt=0)\n"
    assert anchor in text
    schema.write_text(text.replace(anchor, anchor + "    ema_decay: float = 0.0\n"))
    script = f"""
import json
from sail_pipeline.engine.stage import run_config
from sail_pipeline.schema import RuntimeParams, TrainParams
from sail_pipeline.training.config import RunConfig
cfg = run_config("knowledge", TrainParams(steps=2, lr=1e-3, ema_decay=0.5), RuntimeParams(),
                 {str(tmp_path / 'work')!r}, "train.parquet", None, init_from="prev/hf")
path = cfg.save({str(tmp_path / 'run_config.json')!r})
print(json.dumps({{"json": json.loads(path.read_text())["train"]["ema_decay"],
                   "trainer": RunConfig.load(path).train.ema_decay}}))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, env=dict(os.environ, PYTHONPATH=str(src)))
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"json": 0.5, "trainer": 0.5}


def test_run_config_redeclares_no_training_or_runtime_setting():
    mirrored = (set(RunConfig.model_fields) &
                (set(TrainParams.model_fields) | set(RuntimeParams.model_fields)))
    assert not mirrored, f"RunConfig repeats {sorted(mirrored)}: they belong in train/runtime"


def test_the_fingerprint_ignores_exactly_the_neutral_settings():
    base = TrainParams(steps=5, lr=1e-3)
    assert result_settings(base) == result_settings(base.model_copy(update={"log_every": 1}))
    assert result_settings(base) != result_settings(base.model_copy(update={"lr": 2e-3}))
    runtime = RuntimeParams()
    assert "threads" not in result_settings(runtime) and "seed" in result_settings(runtime)


def test_stage_registry_is_the_one_list_of_stages():
    from sail_pipeline.pipelines.recipe import create_pipeline as recipe
    from sail_pipeline.schema import SftParams

    assert RECIPE == ("alignment", "advance", "knowledge", "instruction", "preference")
    stage_fields = [f for f in SftParams.model_fields if f in STAGES]
    assert tuple(stage_fields) == tuple(s for s in RECIPE if STAGES[s].group == "sft")
    trained = [n.name.removeprefix("train_") for n in recipe().nodes if "training" in n.tags]
    assert sorted(trained) == sorted(RECIPE)
    from sail_pipeline import recipe_data
    from sail_pipeline.schema import StageSizeParams

    assert tuple(StageSizeParams.model_fields) == PRETRAIN_STAGES
    assert set(recipe_data.TRAINING_TABLES) >= {STAGES[s].table for s in RECIPE}
    with pytest.raises(InvalidParameters, match="evaluation.checkpoints.*captioner"):
        validate_parameters({"evaluation": {"checkpoints": ["captioner"]}})


def test_variants_are_validated_with_their_overrides_merged_in():
    params = {"runtime": {"seed": 0},
              "variants": {"fast": {"runtime": {"seed": 3}}, "bad": {"runtime": {"sed": 1}}}}
    with pytest.raises(InvalidParameters, match=r"variants\.bad\.runtime\.sed"):
        validate_parameters(params)
    del params["variants"]["bad"]
    project = validate_parameters(params)
    assert project.variants["fast"].runtime.seed == 3 and project.runtime.seed == 0
    with pytest.raises(InvalidParameters, match="lower_snake_case"):
        validate_parameters({"variants": {"Not-OK": {}}})
