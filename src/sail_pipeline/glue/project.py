"""The project's validated parameters, loaded in one place: `load_project(env)`.

Kedro builds the pipelines (`pipeline_registry.register_pipelines`) before it runs them and
calls the registry with no arguments; the project's `kedro run` (`sail_pipeline.cli`) records
its environment and `--params` in the process environment (`SAIL_KEDRO_SESSION`), so that the registry, the context, the tools and the command-line
tools all validate the same tree the same way, and every pipeline receives it as an argument.
Loading is cached by the arguments and the configuration files' modification times.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader

from sail_pipeline.errors import MissingEnvironmentVariable
from sail_pipeline.schema import ProjectParams
from sail_pipeline.training.config import DEEPSPEED_CONFIG_DIR

SESSION_VARIABLE = "SAIL_KEDRO_SESSION"



def _env(name: str, default: str | None = None) -> str:
    """`${env:NAME}` in parameters: machine-specific paths stay out of the tracked config."""
    value = os.environ.get(name, default)
    if value is None:
        raise MissingEnvironmentVariable(
            f"{name} is not set, and the configuration reads it (${{env:{name}}}): e.g. "
            f"`export {name}=/path/to/model` before `kedro run --env gpu`")
    return value


# How Kedro reads conf/ (settings.CONFIG_LOADER_ARGS is this).
CONFIG_LOADER_ARGS: dict[str, Any] = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {
        "parameters": ["parameters*", "parameters*/**"],
    },
    # An environment (conf/micro, conf/gpu) overrides single keys, not whole sections.
    "merge_strategy": {"parameters": "soft"},
    "custom_resolvers": {"env": _env},
}


def project_root(path: str | Path | None = None) -> Path:
    from kedro.utils import find_kedro_project

    start = Path(path or Path.cwd()).resolve()
    return find_kedro_project(start) or start


def session_arguments() -> tuple[str | None, dict[str, Any]]:
    """(environment, runtime parameters) of the `kedro run` in this process, as the project's
    run command records them; outside one (kedro viz), Kedro's own `KEDRO_ENV`."""
    if SESSION_VARIABLE in os.environ:
        recorded = json.loads(os.environ[SESSION_VARIABLE])
        return recorded["env"], recorded["params"]
    return os.environ.get("KEDRO_ENV") or None, {}


def record_session(env: str | None, runtime_params: dict[str, Any] | None) -> None:
    """What `session_arguments` reads, set by the project's `kedro run` before Kedro starts,
    and replaced by the next one (several runs in one process do not leak into each other)."""
    os.environ[SESSION_VARIABLE] = json.dumps(
        {"env": env or os.environ.get("KEDRO_ENV") or None, "params": runtime_params or {}},
        default=str)


def configuration_folders(env: str | None) -> list[str]:
    """The folders a run reads, later ones overriding earlier: Kedro's convention, kept
    (`conf/base`, then `conf/local` when no `--env` is given, else `conf/<env>` instead)."""
    return [f"conf/{CONFIG_LOADER_ARGS['base_env']}",
            f"conf/{env or CONFIG_LOADER_ARGS['default_run_env']}"]


def unread_local_files(project: Path, env: str | None) -> list[str]:
    """Files in `conf/local` that a run with `--env <env>` does not read (it reads
    `conf/<env>` in its place), as paths relative to the project."""
    local = project / "conf" / CONFIG_LOADER_ARGS["default_run_env"]
    if not env or env == CONFIG_LOADER_ARGS["default_run_env"] or not local.is_dir():
        return []
    return sorted(str(p.relative_to(project)) for p in local.rglob("*")
                  if p.is_file() and p.suffix in (".yml", ".yaml", ".json"))


_warned: set[tuple[str, str | None]] = set()


def unread_local_warning(project: Path, env: str | None) -> str | None:
    """The warning a run gives when `conf/local` holds configuration it will not read; once
    per process (`kedro run` says it before Kedro starts, a hook for other sessions)."""
    unread = unread_local_files(project, env)
    if not unread or (str(project), env) in _warned:
        return None
    _warned.add((str(project), env))
    return (f"{', '.join(unread)} {'is' if len(unread) == 1 else 'are'} not read by this run: "
            f"with --env {env} Kedro reads {' + '.join(configuration_folders(env))}, and "
            f"conf/local only when no --env is given. Put what this run needs in conf/{env}/, "
            "or run without --env.")


def config_loader(env: str | None, project: Path, runtime_params: dict[str, Any] | None = None
                  ) -> OmegaConfigLoader:
    return OmegaConfigLoader(str(project / "conf"), env=env, runtime_params=runtime_params or {},
                             **CONFIG_LOADER_ARGS)


def load_project(env: str | None = None, project: str | Path | None = None,
                 runtime_params: dict[str, Any] | None = None) -> ProjectParams:
    """The parameters `kedro run --env <env> --params <runtime_params>` validates, as models.

    Raises `InvalidParameters` naming every bad key."""
    root = project_root(project)
    stamp = tuple(sorted((str(p), p.stat().st_mtime_ns) for p in (root / "conf").rglob("*")
                         if p.is_file()))
    return _load(str(root), env, json.dumps(runtime_params or {}, sort_keys=True, default=str),
                 stamp)


@lru_cache(maxsize=8)
def _load(root: str, env: str | None, runtime_params: str, stamp: tuple) -> ProjectParams:
    from sail_pipeline.glue.validation import validate_project

    loader = config_loader(env, Path(root), json.loads(runtime_params))
    return validate_project(dict(loader["parameters"]),
                            deepspeed_dir=Path(root) / DEEPSPEED_CONFIG_DIR)
