"""The project's command-line entry points, all in this package.

`kedro run` (this module's `run`, which Kedro's own defers to: Kedro loads this module's
`cli` group and lets its commands override the built-in ones) is Kedro's, except that:
- an error the user fixes (a bad parameter, a missing file or environment variable;
  `sail_pipeline.errors`) is printed as its message, not as a 200-line traceback of the
  machinery that found it; exit status 2, as for a usage error; `SAIL_TRACEBACK=1` prints the
  traceback as well;
- it records its `--env` and `--params` (`glue.project.record_session`) before Kedro starts,
  so that the pipeline registry builds the pipelines from the parameters the run validates;
- an unknown pipeline or `--env` is one line naming the valid ones (and the closest), not
  Kedro's traceback of an import or a missing folder.

The tools are this package's other modules, each a console script (pyproject.toml):
`sail-report`, `sail-sweep-commands`, `sail-memory-plan`, `sail-caption-score`,
`sail-quality-garbage`.
"""

from __future__ import annotations

import difflib
import functools
import os
import sys
from pathlib import Path
from typing import Any

# A tool's stdout is its output (`sail-report > results.md`): in a console script of ours (not
# `kedro run`, which imported Kedro first), Kedro's logging, configured when
# `kedro.framework.project` is first imported, goes to stderr.
if Path(sys.argv[0]).name.startswith("sail-"):
    from sail_pipeline.glue.project_catalog import logs_to_stderr

    logs_to_stderr()

import click  # noqa: E402
from kedro.framework.cli.project import run as kedro_run  # noqa: E402
from kedro.framework.cli.utils import CONTEXT_SETTINGS  # noqa: E402

from sail_pipeline.errors import TRACEBACK_VARIABLE, UserError, explain  # noqa: E402


@click.group(context_settings=CONTEXT_SETTINGS, name=__file__)
def cli() -> None:
    """The project's commands (Kedro's, with `run` showing configuration errors plainly)."""


def _plain_errors(callback: Any) -> Any:
    @functools.wraps(callback)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except Exception as error:
            message = explain(error)
            if message is None or os.environ.get(TRACEBACK_VARIABLE):
                raise
            click.echo(message, err=True)
            sys.exit(2)

    return guarded


class UnknownName(UserError, ValueError):
    """A pipeline or environment name that the project does not have."""


def _unknown(kind: str, name: str, known: list[str]) -> UnknownName:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return UnknownName(f"no {kind} {name!r}{hint}; the {kind}s are: {', '.join(known)}")


def check_run_names(project: Path, env: str | None, pipelines: list[str]) -> None:
    """Every name in `--env` and `--pipelines` exists in the project at `project`."""
    conf = project / "conf"
    envs = sorted(p.name for p in conf.iterdir() if p.is_dir() and p.name != "base") \
        if conf.is_dir() else []
    if env and envs and env not in envs:
        raise _unknown("environment", env, envs)
    folder = Path(__file__).parents[1] / "pipelines"
    known = sorted(p.name for p in folder.iterdir() if (p / "pipeline.py").exists())
    for name in pipelines:
        if name != "__default__" and name not in known:
            raise _unknown("pipeline", name, [*known, "__default__"])


def _known_names(callback: Any) -> Any:
    @functools.wraps(callback)
    def checked(*args: Any, **kwargs: Any) -> Any:
        names = list(kwargs.get("pipelines") or []) + (
            [kwargs["pipeline"]] if kwargs.get("pipeline") else [])
        check_run_names(Path.cwd(), kwargs.get("env") or os.environ.get("KEDRO_ENV"), names)
        return callback(*args, **kwargs)

    return checked


def _recording_session(callback: Any) -> Any:
    @functools.wraps(callback)
    def recorded(*args: Any, **kwargs: Any) -> Any:
        from sail_pipeline.glue.project import record_session

        record_session(kwargs.get("env"), kwargs.get("params"))
        return callback(*args, **kwargs)

    return recorded


run = click.Command(name="run", params=kedro_run.params, help=kedro_run.help,
                    short_help=kedro_run.short_help, context_settings=kedro_run.context_settings,
                    callback=_plain_errors(_known_names(_recording_session(kedro_run.callback))))
cli.add_command(run)
