"""The project's catalog outside `kedro run`, for the command-line tools (report, scoring).

Paths come from the catalog of the chosen environment, as in a run: `--env micro` reads what
`make micro` wrote under data/micro.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def project_catalog(env: str | None = None, project: str | Path | None = None) -> Any:
    """The DataCatalog a `kedro run --env <env>` in `project` (default: here) would use."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    root = Path(project or Path.cwd()).resolve()
    bootstrap_project(root)
    with KedroSession.create(project_path=root, env=env) as session:
        return session.load_context().catalog
