"""Dry runs: `runtime.launcher.dry_run: true` prints what a run would do and writes nothing.

One mechanism for every node (`stand_ins`, applied by the pipeline registry):
- a training node (tag `training`) runs: the launcher prints its stage's command and trains
  nothing (`training.launcher`), and it hands the next stage the checkpoint's would-be path;
- every other node is stood in for by one function that logs the node and the command that
  runs it alone, and returns `NOT_RUN` for each of its outputs.

The `DryRunHook` makes every dataset of the run save into memory (`glue.io.DryRunDataset`):
a table a stood-in node "wrote" loads, for the next node, as the path a real run writes it.
"""

from __future__ import annotations

import logging
from typing import Any

from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node

from sail_pipeline.errors import UserError

log = logging.getLogger(__name__)
TRAINING_TAG = "training"


class NotRun:
    """What a node that a dry run did not run "returned"."""

    _instance: NotRun | None = None

    def __new__(cls) -> NotRun:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOT_RUN"


NOT_RUN = NotRun()


def alone_command(node: Node, pipeline: str, env: str | None) -> str:
    """The command that runs this node alone (a namespaced node: its namespace)."""
    selector = f"--namespaces={node.namespace}" if node.namespace else f"--nodes={node.name}"
    return f"kedro run --pipelines={pipeline} {selector}" + (f" --env {env}" if env else "")


def _stand_in(node: Node, pipeline: str, env: str | None) -> Node:
    command = alone_command(node, pipeline, env)
    outputs = node._outputs  # as the node declares them: None, a name, a list or a dict

    def not_run(*args: Any, **kwargs: Any) -> Any:
        log.info("dry run: %s not run; alone: %s", node.name, command)
        if outputs is None:
            return None
        if isinstance(outputs, str):
            return NOT_RUN
        if isinstance(outputs, dict):
            return dict.fromkeys(outputs, NOT_RUN)
        return [NOT_RUN] * len(outputs)

    not_run.__name__ = not_run.__qualname__ = node.func.__name__
    not_run.stood_in_for = node.func  # type: ignore[attr-defined]
    return node._copy(func=not_run)


class MissingForDryRun(UserError, RuntimeError):
    """A training stage's dry run needs an input that no run has made."""


def _guarded(node: Node) -> Node:
    """A training node that says which input it lacks instead of failing on a stand-in."""
    names = node.inputs
    func = node.func

    def run(*args: Any, **kwargs: Any) -> Any:
        missing = [n for n, value in zip(names, args, strict=False) if value is NOT_RUN]
        if missing:
            raise MissingForDryRun(
                f"dry run: {node.name} starts from {', '.join(missing)}, which neither this "
                f"run nor an earlier one made; run the pipeline that makes it first, or "
                f"include it in the dry run")
        return func(*args, **kwargs)

    run.__name__ = run.__qualname__ = func.__name__
    return node._copy(func=run)


def stand_ins(pipeline: Pipeline, name: str, env: str | None = None) -> Pipeline:
    """`pipeline` for a dry run: its training nodes as they are, every other node stood in."""
    return Pipeline([_guarded(node) if TRAINING_TAG in node.tags else _stand_in(node, name, env)
                     for node in pipeline.nodes])


def blank_figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.figure()
