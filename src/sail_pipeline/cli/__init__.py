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

import copy
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
        env = kwargs.get("env") or os.environ.get("KEDRO_ENV")
        check_run_names(Path.cwd(), env, names)
        from sail_pipeline.glue.project import project_root, unread_local_warning

        unread = unread_local_warning(project_root(), env)
        if unread:
            click.secho(f"WARNING: {unread}", fg="yellow", err=True)
        return callback(*args, **kwargs)

    return checked


def _recording_session(callback: Any) -> Any:
    @functools.wraps(callback)
    def recorded(*args: Any, **kwargs: Any) -> Any:
        from sail_pipeline.glue.project import record_session

        record_session(kwargs.get("env"), kwargs.get("params"))
        return callback(*args, **kwargs)

    return recorded


def split_params(value: str) -> dict[str, Any]:
    """`--params` as YAML values: `a.b=1,c=[16,32],d={lr: 1e-3, epochs: 2}`.

    Kedro splits the option on every comma, so a list (`scaling.sizes=[16,32]`) failed with
    "Item `32]` must contain a key and a value". Here a comma splits items only outside
    brackets, braces and quotes; each value is then read as YAML, as Kedro does for one.
    """
    from omegaconf import OmegaConf

    items, current, depth, quote = [], "", 0, ""
    for char in value:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            items.append(current)
            current = ""
            continue
        current += char
    items.append(current)
    dotlist = []
    for item in (i.strip() for i in items if i.strip()):
        key, equals, text = item.partition("=")
        if not equals or not key.strip():
            raise click.BadParameter(f"{item!r}: give key=value (e.g. scaling.sizes=[16,32])",
                                     param_hint="'--params'")
        dotlist.append(f"{key.strip()}={text.strip()}")
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist(dotlist))  # type: ignore[return-value]
    except Exception as error:  # noqa: BLE001  (OmegaConf's grammar errors)
        raise click.BadParameter(str(error).splitlines()[0], param_hint="'--params'") from None


def nest_params(flat: dict[str, Any]) -> dict[str, Any]:
    """`{"scaling.sizes": [16]}` (a --config file's `params`) -> `{"scaling": {"sizes": [16]}}`,
    as `--params` gives them (Kedro would pass the dotted key on as one unknown key)."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = str(key).split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = nest_params(value) if isinstance(value, dict) else value
    return nested


def _params_callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    return nest_params(value) if isinstance(value, dict) else split_params(value or "")


def _run_options() -> list[click.Parameter]:
    options = []
    for option in kedro_run.params:
        if option.name == "params":
            option = copy.copy(option)
            option.callback = _params_callback
            option.help = ("Parameters to override: key=value items separated by commas; a "
                           "value is YAML, so lists and mappings work: --params "
                           "\"scaling.sizes=[16,32,64],scaling.seeds=[0,1]\". Many keys at once: "
                           "--config FILE with run.params (docs: The recipe, Parameters).")
        options.append(option)
    return options


run = click.Command(name="run", params=_run_options(), help=kedro_run.help,
                    short_help=kedro_run.short_help, context_settings=kedro_run.context_settings,
                    callback=_plain_errors(_known_names(_recording_session(kedro_run.callback))))
cli.add_command(run)
