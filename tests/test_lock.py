"""The lock file: current with pyproject.toml, CPU-only, and what this interpreter runs."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import sys
import warnings
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.environment


def _load_lock_tool():
    spec = importlib.util.spec_from_file_location("lock_tool", ROOT / "tools" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


lock_tool = _load_lock_tool()
CPU = lock_tool.FLAVOURS["cpu"]


def test_lock_was_compiled_from_the_current_pyproject():
    problems = lock_tool.staleness(CPU)
    assert not problems, ("requirements/lock-cpu.txt is stale; run `make lock`:\n  "
                          + "\n  ".join(problems))


def test_staleness_names_an_added_and_a_changed_dependency(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    text = (ROOT / "pyproject.toml").read_text()
    assert '"pydantic>=2.7,<3",' in text
    text = text.replace('"pydantic>=2.7,<3",', '"pydantic>=2.8,<3",\n    "einops>=0.8",')
    pyproject.write_text(text)
    problems = lock_tool.staleness(CPU, pyproject)
    assert "added to pyproject.toml: [project] einops>=0.8" in problems
    assert "added to pyproject.toml: [project] pydantic>=2.8,<3" in problems
    assert "removed from pyproject.toml: [project] pydantic>=2.7,<3" in problems
    assert len(problems) == 3


def test_staleness_sees_a_changed_uv_config(tmp_path):
    copy = dataclasses.replace(CPU, directory=tmp_path)
    shutil.copy(CPU.lock, copy.lock)
    shutil.copy(CPU.uv_config, copy.uv_config)
    assert lock_tool.staleness(copy) == []
    copy.uv_config.write_text(copy.uv_config.read_text().replace("torch==", "torch>="))
    assert lock_tool.staleness(copy) == [f"{copy.uv_config} changed"]


def test_every_declared_requirement_is_met_by_its_pin():
    pins = lock_tool.pinned_versions(CPU.lock)
    environment = default_environment()
    unmet = []
    for line in lock_tool.lock_inputs(CPU):
        if line.startswith("requires-python"):
            continue
        requirement = Requirement(line.split("] ", 1)[1])
        if requirement.marker and not requirement.marker.evaluate(environment):
            continue
        pin = pins.get(lock_tool.canonical_name(requirement.name))
        if pin is None or not requirement.specifier.contains(pin, prereleases=True):
            unmet.append(f"{requirement} (locked: {pin})")
    assert not unmet, f"pins outside pyproject.toml's ranges: {unmet}"


def test_cpu_lock_keeps_cuda_out():
    pins = lock_tool.pinned_versions(CPU.lock)
    assert pins["torch"].endswith("+cpu"), pins["torch"]
    cuda = [name for name in pins
            if name.startswith(("nvidia-", "cuda-")) or name in {"triton", "flash-attn",
                                                                  "torchvision"}]
    assert not cuda, f"CUDA packages in the CPU lock: {cuda}"
    # the one release known to break lmms-eval's evaluator
    assert int(pins["filelock"].split(".")[0]) < 4


def test_this_interpreter_runs_exactly_the_locked_packages():
    problems, extras = lock_tool.environment_differences(CPU)
    assert not problems, ("this environment is not requirements/lock-cpu.txt; run `make install`:"
                          "\n  " + "\n  ".join(problems))
    if extras:
        warnings.warn(f"installed by hand, not in the lock: {extras}", stacklevel=1)


def test_gpu_flavour_takes_flash_attention_and_cpu_does_not():
    gpu = lock_tool.FLAVOURS["gpu"]
    assert any(line.startswith("[flash] flash-attn") for line in lock_tool.lock_inputs(gpu))
    assert not any("flash-attn" in line for line in lock_tool.lock_inputs(CPU))
    assert gpu.uv_config.exists() and "flash-attn" in gpu.build_against_torch
