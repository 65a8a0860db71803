"""Fail on bad parameters before any node runs, naming every bad key."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from sail_pipeline.params import validate_parameters
from sail_pipeline.training.config import DEEPSPEED_CONFIG_DIR

log = logging.getLogger(__name__)


class ValidateParametersHook:
    @hook_impl
    def after_context_created(self, context: Any) -> None:
        validate_parameters(dict(context.params),
                            deepspeed_dir=Path(context.project_path) / DEEPSPEED_CONFIG_DIR)
        log.info("parameters validated")
