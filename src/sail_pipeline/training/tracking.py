"""Metrics from the trainer: a JSONL file always, an MLflow run nested under Kedro's when asked."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from sail_pipeline.lineage import log_table_inputs
from sail_pipeline.training.config import TrackingConfig

log = logging.getLogger(__name__)


class MetricLogger:
    def __init__(self, tracking: TrackingConfig, output_dir: Path, params: dict, enabled: bool,
                 resumed: bool = False, inputs: dict[str, str | None] | None = None):
        self.enabled = enabled
        self.path = output_dir / "metrics.jsonl"
        self._mlflow = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not resumed:  # a resumed run appends to the curve it continues
            self.path.write_text("")
        if tracking.tracking_uri:
            import mlflow

            mlflow.set_tracking_uri(tracking.tracking_uri)
            run = mlflow.start_run(
                experiment_id=tracking.experiment_id,
                run_name=tracking.run_name,
                parent_run_id=tracking.parent_run_id,
                nested=tracking.parent_run_id is not None,
                tags=tracking.tags,
            )
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            log_table_inputs(inputs or {})
            self._mlflow = mlflow
            self.run_id = run.info.run_id
            log.info("logging to MLflow run %s (parent %s)", run.info.run_id,
                     tracking.parent_run_id)

    def log(self, metrics: dict[str, float], step: int) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as handle:
            handle.write(json.dumps({"step": step, **metrics}) + "\n")
        if self._mlflow is not None:
            self._mlflow.log_metrics(metrics, step=step)

    def close(self, status: str = "FINISHED") -> None:
        if self._mlflow is not None:
            self._mlflow.end_run(status=status)
            self._mlflow = None
