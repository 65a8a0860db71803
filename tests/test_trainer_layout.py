"""The trainer stays in small functions with one purpose each (issue #26): no function of the
training package is over 60 lines, and the package never imports Kedro (it runs in
DeepSpeed's processes)."""

from __future__ import annotations

import ast
from pathlib import Path

import sail_pipeline.training

TRAINING = Path(sail_pipeline.training.__file__).parent
LONGEST = 60  # lines of a def, its docstring included


def _trees() -> dict[str, ast.Module]:
    return {path.name: ast.parse(path.read_text()) for path in sorted(TRAINING.glob("*.py"))}


def test_no_function_of_the_training_package_is_over_60_lines():
    too_long = [f"{name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
                for name, tree in _trees().items() for node in ast.walk(tree)
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and node.end_lineno - node.lineno + 1 > LONGEST]
    assert not too_long, too_long


def test_the_trainer_is_split_by_purpose_and_never_imports_kedro():
    trees = _trees()
    assert {"train.py", "resume.py", "loop.py", "summary.py"} <= set(trees)
    kedro = [name for name, tree in trees.items() for node in ast.walk(tree)
             if (isinstance(node, ast.Import) and any(a.name.split(".")[0] == "kedro" for a in node.names))
             or (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "kedro")]
    assert not kedro, kedro
