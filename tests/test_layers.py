"""The layers hold: Kedro's entry points > the Kedro pipelines > the Kedro glue > the
experiments > the library, checked by import-linter against pyproject.toml's contracts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(project: Path, source: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--config", str(project / "pyproject.toml"), "--no-cache"],
                          cwd=project, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(source)))


def test_the_import_contracts_are_kept():
    result = _lint(ROOT, ROOT / "src")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("training/config.py", "import sail_pipeline.glue.hooks", "The library imports no layer"),
    ("glue/io.py", "import sail_pipeline.pipeline_registry", "Kedro entry points >"),
    ("schema/base.py", "import sail_pipeline.world", "The parameter schema is the bottom"),
])
def test_a_deliberate_violation_breaks_its_contract(tmp_path, module, line, contract):
    shutil.copytree(ROOT / "src" / "sail_pipeline", tmp_path / "src" / "sail_pipeline",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "src" / "sail_pipeline" / module
    target.write_text(target.read_text() + f"\n{line}  # the deliberate violation\n")
    result = _lint(tmp_path, tmp_path / "src")
    assert result.returncode != 0
    broken = result.stdout[result.stdout.index("Broken contracts"):]
    assert contract in broken and line.split()[-1] in broken


def test_every_module_of_the_package_is_in_a_layer_or_the_library():
    """A new top-level module must be placed: the contracts name every one."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    named: set[str] = set()
    for contract in config["contracts"]:
        for layer in contract.get("layers", []):
            named |= {m.strip() for m in layer.split("|")}
        named |= set(contract.get("source_modules", []))
    package = ROOT / "src" / "sail_pipeline"
    modules = {f"sail_pipeline.{p.stem if p.is_file() else p.name}" for p in package.iterdir()
               if (p.suffix == ".py" and p.name != "__init__.py")
               or (p.is_dir() and (p / "__init__.py").exists())}
    assert modules - named == set(), f"not in any layer: {sorted(modules - named)}"
