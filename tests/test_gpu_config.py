"""conf/gpu validates, and the GPU benchmark's code path runs (on CPU, as a smoke run)."""

import subprocess
import sys
from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from sail_pipeline import settings
from sail_pipeline.glue.validation import validate_project
from sail_pipeline.schema import training_runs
from sail_pipeline.training.memory_plan import plan

PROJECT = Path(__file__).resolve().parents[1]


def _gpu_params() -> dict:
    loader = OmegaConfigLoader(str(PROJECT / "conf"), env="gpu", **{
        k: v for k, v in settings.CONFIG_LOADER_ARGS.items() if k != "default_run_env"})
    return dict(loader["parameters"])


def test_gpu_environment_validates_and_fits_one_80gb_gpu(monkeypatch):
    monkeypatch.setenv("SAIL_LLM_PATH", "/models/qwen2.5-1.5b")
    monkeypatch.setenv("SAIL_VIT_PATH", "/models/internvit-300m")
    project = validate_project(_gpu_params(), deepspeed_dir=PROJECT / "conf/base/deepspeed")
    assert project.pretrain.preset == "sail-vl-2b"
    assert project.pretrain.llm.path == "/models/qwen2.5-1.5b"
    for key, run in training_runs(project).items():
        # The experiments' stages inherit the recipe's GPU settings; their budgets are their own
        # (one pass over a point's data).
        experiment = key.startswith(("scaling.", "selection."))
        assert (experiment or run.tokens) and run.gradient_checkpointing, key
        estimate = plan("sail-vl-2b", gpus=1, gpu_gib=80, zero_stage=2,
                        micro_batch=run.micro_batch_size, seq_len=run.max_seq_len,
                        grad_ckpt=True)
        assert estimate["fits"], (key, estimate)


def test_gpu_environment_names_a_missing_environment_variable(monkeypatch):
    monkeypatch.delenv("SAIL_LLM_PATH", raising=False)
    monkeypatch.setenv("SAIL_VIT_PATH", "/models/internvit-300m")
    with pytest.raises(Exception, match="SAIL_LLM_PATH is not set"):
        _gpu_params()


def test_kedro_run_on_gpu_without_the_variable_prints_the_fix_not_a_traceback(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("SAIL_LLM_PATH", "SAIL_VIT_PATH")}
    outcome = subprocess.run([str(Path(sys.executable).parent / "kedro"), "run", "--env", "gpu",
                              "--pipelines=backbones"], cwd=PROJECT, env=env,
                             capture_output=True, text=True, timeout=300)
    assert outcome.returncode == 2
    assert "Traceback" not in outcome.stdout + outcome.stderr
    assert outcome.stderr.strip().splitlines()[-1:] == [
        "MissingEnvironmentVariable: SAIL_LLM_PATH is not set, and the configuration reads it "
        "(${env:SAIL_LLM_PATH}): e.g. `export SAIL_LLM_PATH=/path/to/model` before "
        "`kedro run --env gpu`"]


def test_a_bug_keeps_its_traceback_and_a_user_error_is_found_through_its_causes():
    from sail_pipeline.errors import UserError, explain
    from sail_pipeline.schema import InvalidParameters

    try:
        try:
            raise InvalidParameters("invalid parameters:\n  a.b: bad")
        except InvalidParameters as inner:
            raise RuntimeError("wrapped by the framework") from inner
    except RuntimeError as outer:
        assert explain(outer) == "InvalidParameters: invalid parameters:\n  a.b: bad"
    assert explain(KeyError("a bug")) is None
    assert issubclass(InvalidParameters, UserError | ValueError)


def test_gpu_mfu_benchmark_runs_its_code_path_on_cpu():
    result = subprocess.run(
        [sys.executable, str(PROJECT / "benchmarks/gpu_mfu.py"), "--device", "cpu", "--preset",
         "tiny", "--seq-lens", "256", "--steps", "1", "--warmup", "1", "--tiles", "1",
         "--text-tokens", "32", "--vocab-size", "2048"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("MFU: seq 256")
    assert "tokens/s/GPU" in result.stdout
