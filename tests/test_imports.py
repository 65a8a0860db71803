"""Import smoke test: every module of the package, and lmms-eval's evaluator.

A dependency that breaks on import (a new major release, a missing runtime piece of lmms-eval)
fails here in seconds, naming the module, instead of minutes into a training or evaluation run.
conftest.py runs these first and stops the session if one fails.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import sail_pipeline

pytestmark = pytest.mark.environment

MODULES = sorted(info.name for info in
                 pkgutil.walk_packages(sail_pipeline.__path__, "sail_pipeline."))


def test_the_walk_finds_the_package():
    assert len(MODULES) > 50 and "sail_pipeline.training.train" in MODULES


@pytest.mark.parametrize("module", MODULES)
def test_module_imports(module):
    importlib.import_module(module)


@pytest.mark.parametrize("module", ["lmms_eval.evaluator", "lmms_eval.tasks", "deepspeed",
                                    "kedro_mlflow", "dvc.repo", "ray.data"])
def test_runtime_dependency_imports(module):
    importlib.import_module(module)


def test_lmms_eval_finds_our_model_through_its_entry_point():
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="lmms_eval.models") if e.name == "sail_vl"]
    assert entry.load() is not None
