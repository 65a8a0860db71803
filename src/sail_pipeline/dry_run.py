"""Dry runs for the nodes that are not training stages.

`runtime.launcher.dry_run: true` prints each training stage's command and writes nothing
(`hooks.DryRunHook`). Nodes that need a checkpoint a dry run does not make (recaptioning,
quality signals) or that write working folders themselves (caption shards, the signal cache)
log what they would do and hand the next node an empty result of the right shape instead.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)
_active = False
_env: str | None = None


def activate(on: bool, env: str | None = None) -> None:
    """Turn dry runs on or off for this run; `env` is its Kedro environment, which the
    commands a dry run prints must repeat."""
    global _active, _env
    _active, _env = on, env


def run_env() -> str | None:
    return _env


def active() -> bool:
    return _active


def or_placeholder(placeholder: Callable[..., Any]) -> Callable[[Callable], Callable]:
    """Run the node, or in a dry run log it and return `placeholder(*args)` instead."""

    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def node(*args: Any, **kwargs: Any) -> Any:
            if _active:
                log.info("dry run: would run %s", function.__name__)
                return placeholder(*args, **kwargs)
            return function(*args, **kwargs)

        return node

    return decorate


def blank_figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.figure()
