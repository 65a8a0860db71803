"""The project's catalog outside `kedro run`, for the command-line tools (report, scoring).

Paths come from the catalog of the chosen environment, as in a run: `--env micro` reads what
`make micro` wrote under data/micro. Kedro's log lines go to stderr here, so that a tool's
stdout holds only its results (`sail-report > results.md`).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

# Kedro configures logging when `kedro.framework.project` is first imported: to stdout, with
# rich. A tool's stdout is its output, so its logs go to stderr instead.
STDERR_LOGGING = Path(__file__).with_name("logging_stderr.yaml")
LOGGING_VARIABLE = "KEDRO_LOGGING_CONFIG"


def logs_to_stderr() -> None:
    """Route Kedro's (and everyone's) log records to stderr, before or after Kedro set up.

    The configuration is named to Kedro only while it configures itself, so the processes this
    one starts (a `kedro run`) log as they would anyway."""
    if "kedro.framework.project" not in sys.modules:
        previous = os.environ.get(LOGGING_VARIABLE)
        os.environ[LOGGING_VARIABLE] = str(STDERR_LOGGING)
        try:
            import kedro.framework.project  # noqa: F401  (configures logging on import)
        finally:
            if previous is None:
                os.environ.pop(LOGGING_VARIABLE, None)
            else:
                os.environ[LOGGING_VARIABLE] = previous
        return
    for handler in logging.getLogger().handlers:
        console = getattr(handler, "console", None)
        if console is not None:
            console.file = sys.stderr
        elif getattr(handler, "stream", None) is sys.stdout:
            handler.setStream(sys.stderr)  # type: ignore[attr-defined]


def project_catalog(env: str | None = None, project: str | Path | None = None) -> Any:
    """The DataCatalog a `kedro run --env <env>` in `project` (default: here) would use."""
    logs_to_stderr()
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    root = Path(project or Path.cwd()).resolve()
    bootstrap_project(root)
    logs_to_stderr()
    with KedroSession.create(project_path=root, env=env) as session:
        return session.load_context().catalog


def _location(dataset: Any) -> Path | None:
    """Its `filepath` or `path`, looking through wrappers (kedro-mlflow's artifact datasets)."""
    described = dataset._describe()
    location = described.get("filepath") or described.get("path")
    if location:
        return Path(str(location))
    inner = getattr(dataset, "_dataset", None)
    return _location(inner) if inner is not None else None


def catalog_path(catalog: Any, name: str) -> Path:
    """The file or folder a catalog entry reads and writes (its `filepath` or `path`)."""
    dataset = catalog.get(name)
    if dataset is None:
        raise KeyError(f"the catalog has no dataset {name!r}")
    location = _location(dataset)
    if location is None:
        raise KeyError(f"the catalog's {name!r} names no file or folder")
    return location
