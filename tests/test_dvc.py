"""dvc.yaml cannot drift from the code: every module a stage imports is one of its deps."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


dvc_stages = _load("dvc_stages")


def uncovered(dvc_yaml: dict, stage: str) -> list[str]:
    """Modules `kedro run --pipelines=<stage>` imports that the stage's deps do not cover."""
    deps = dvc_yaml["stages"][stage]["deps"]
    files = sorted(dvc_stages.module_file(m) for m in dvc_stages.stage_modules(stage))
    return [str(f.relative_to(ROOT)) for f in files if not dvc_stages.covered(f, deps)]


@pytest.mark.parametrize("stage", dvc_stages.STAGES)
def test_every_imported_module_is_a_dependency_of_its_stage(stage):
    missing = uncovered(yaml.safe_load((ROOT / "dvc.yaml").read_text()), stage)
    assert not missing, (f"dvc.yaml stage {stage!r} misses modules it imports: {missing}; "
                         "run `make dvc`")


def test_the_check_catches_the_drift_of_the_hand_written_file():
    """The dvc.yaml before it was generated listed modeling/inference.py for evaluation but not
    the presets and processor it imports: a processor change left old scores in place."""
    hand_written = {"stages": {"evaluation": {"deps": [
        "data/05_model_input/benchmark.parquet", "src/sail_pipeline/evaluation",
        "src/sail_pipeline/modeling/inference.py", "src/sail_pipeline/pipelines/evaluation"]}}}
    missing = uncovered(hand_written, "evaluation")
    assert "src/sail_pipeline/modeling/processor.py" in missing
    assert "src/sail_pipeline/modeling/presets.py" in missing


def test_the_import_graph_follows_lazy_and_relative_imports():
    modules = dvc_stages.import_closure(["sail_pipeline.pipelines.evaluation"])
    # evaluation/__init__ imports `.pipeline` (relative); its create_pipeline imports the recipe
    # inside the function (lazy); lmms_model is loaded by lmms-eval's entry point.
    assert "sail_pipeline.pipelines.evaluation.pipeline" in modules
    assert "sail_pipeline.pipelines.recipe.pipeline" in modules
    assert "sail_pipeline.evaluation.lmms_model" in dvc_stages.stage_modules("evaluation")


def test_dvc_yaml_is_what_the_pipelines_and_catalog_give():
    assert (ROOT / "dvc.yaml").read_text() == dvc_stages.render(), \
        "dvc.yaml is out of date with the pipelines, catalog or imports: run `make dvc`"


def test_dvcignore_hides_every_telemetry_file_from_dvc():
    from sail_pipeline import run_telemetry

    patterns = {line.strip() for line in (ROOT / ".dvcignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    missing = set(run_telemetry.TELEMETRY_FILES + run_telemetry.CACHE_FOLDERS) - patterns
    assert not missing, f".dvcignore misses telemetry files {sorted(missing)}"
