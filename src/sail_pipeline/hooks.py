"""Fail on bad parameters before any node runs, naming every bad key; hand over credentials."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl

from sail_pipeline.captioning import credentials
from sail_pipeline.params import validate_parameters
from sail_pipeline.training.config import DEEPSPEED_CONFIG_DIR

log = logging.getLogger(__name__)


class ValidateParametersHook:
    @hook_impl
    def after_context_created(self, context: Any) -> None:
        validate_parameters(dict(context.params),
                            deepspeed_dir=Path(context.project_path) / DEEPSPEED_CONFIG_DIR)
        log.info("parameters validated")


class CredentialsHook:
    """API keys from conf/local/credentials.yml to the captioning nodes, never via parameters
    (kedro-mlflow logs those)."""

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        try:
            found = context.config_loader["credentials"]
        except (MissingConfigException, KeyError):
            found = {}
        credentials.remember(found or {})
