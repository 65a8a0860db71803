"""Kedro project settings."""

import os
from pathlib import Path

from kedro.config import OmegaConfigLoader
from kedro.utils import find_kedro_project

from sail_pipeline.hooks import CredentialsHook, ValidateParametersHook

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
# MLflow 3 refuses a file store; an absolute sqlite path also survives `dvc exp run`, which
# runs experiments in a temporary copy of the project.
_ROOT = find_kedro_project(Path.cwd()) or Path.cwd()
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path(_ROOT).resolve() / 'mlflow.db'}")



def _env(name: str, default: str | None = None) -> str:
    """`${env:NAME}` in parameters: machine-specific paths stay out of the tracked config."""
    value = os.environ.get(name, default)
    if value is None:
        raise ValueError(f"environment variable {name} is not set; the configuration reads it "
                         f"(e.g. `export {name}=/path/to/model` before `kedro run --env gpu`)")
    return value


HOOKS = (ValidateParametersHook(), CredentialsHook())
CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {
        "parameters": ["parameters*", "parameters*/**"],
    },
    # An environment (conf/micro, conf/gpu) overrides single keys, not whole sections.
    "merge_strategy": {"parameters": "soft"},
    "custom_resolvers": {"env": _env},
}
