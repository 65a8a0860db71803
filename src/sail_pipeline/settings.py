"""Kedro project settings."""

import os
from pathlib import Path

from kedro.config import OmegaConfigLoader
from kedro.utils import find_kedro_project

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
# MLflow 3 refuses a file store: an sqlite file at the project root. A queued `dvc exp run`
# runs in a temporary copy (<repo>/.dvc/tmp/exps/tmp…) that is deleted afterwards; DVC names
# the repository it came from (DVC_ROOT, with DVC_EXP_NAME), whose store gets its runs.
_ROOT = find_kedro_project(Path.cwd()) or Path.cwd()
if os.environ.get("DVC_EXP_NAME") and os.environ.get("DVC_ROOT"):
    _ROOT = Path(os.environ["DVC_ROOT"])
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path(_ROOT).resolve() / 'mlflow.db'}")

# kedro-mlflow's KedroPipelineModel subclasses MLflow's PythonModel without type hints on
# `predict`. MLflow checks every PythonModel subclass as it is defined and prints a 15-line
# warning, on every `kedro` command (`--help` too), under its own warnings filter, so a filter
# here cannot catch it. This project logs no pyfunc models: skip that check, with MLflow's own
# switch for classes whose hints it cannot use. Kedro reads these settings before it loads
# kedro-mlflow's commands.
from mlflow.pyfunc import PythonModel  # noqa: E402

PythonModel._skip_type_hint_validation = True

from sail_pipeline.glue.context import ProjectContext  # noqa: E402
from sail_pipeline.glue.hooks import (  # noqa: E402
    CredentialsHook,
    CurveLinksHook,
    DryRunHook,
    DvcLockHook,
    NodeTimingHook,
    OutputLockHook,
    PointProgressHook,
    ProvenanceHook,
    SharedInputsHook,
    TrackingHook,
    ValidateParametersHook,
)
from sail_pipeline.glue.project import CONFIG_LOADER_ARGS as PROJECT_CONFIG_LOADER_ARGS  # noqa: E402

CONTEXT_CLASS = ProjectContext
# kedro-mlflow's hook is registered as TrackingHook, which extends it with lineage.
# (Kedro matches the distribution name as its metadata spells it: kedro_mlflow.)
DISABLE_HOOKS_FOR_PLUGINS = ("kedro_mlflow", "kedro-mlflow")
# pluggy calls the last registered first: before the pipeline runs, the parameters are
# checked against its nodes (ValidateParametersHook), then its outputs locked, then MLflow.
HOOKS = (CredentialsHook(), DryRunHook(), OutputLockHook(), ValidateParametersHook(),
         DvcLockHook(), NodeTimingHook(), ProvenanceHook(), TrackingHook(), PointProgressHook(),
         SharedInputsHook(), CurveLinksHook())
CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = PROJECT_CONFIG_LOADER_ARGS
