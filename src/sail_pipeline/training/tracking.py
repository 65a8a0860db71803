"""Metrics from the trainer: a JSONL file always, an MLflow run nested under Kedro's when asked."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from sail_pipeline.lineage import log_table_inputs
from sail_pipeline.training.config import TrackingConfig

log = logging.getLogger(__name__)


RUN_FILE = "mlflow_run.json"  # the stage's MLflow run, so that a resumed stage can close it


class MetricLogger:
    """metrics.jsonl, and the stage's MLflow run when tracking is on.

    A stage resumed at `resumed_at` (the step of its checkpoint) continues the curve: the lines
    the killed process wrote after that checkpoint are dropped (those steps are trained again),
    the new MLflow run receives the kept lines first, so that its metrics are the whole run's,
    and the killed run is closed as KILLED, tagged with the run that resumed it. A stage killed
    before its first checkpoint starts again from step 0; its run, left RUNNING by the kill, is
    closed as KILLED too, tagged with the run that started over.
    """

    def __init__(self, tracking: TrackingConfig, output_dir: Path, params: dict, enabled: bool,
                 resumed_at: int | None = None, inputs: dict[str, str | None] | None = None):
        self.enabled = enabled
        self.path = output_dir / "metrics.jsonl"
        self._run_file = output_dir / RUN_FILE
        self._mlflow = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = self._kept_lines(resumed_at)
        self.path.write_text("".join(json.dumps(row) + "\n" for row in kept))
        if tracking.tracking_uri:
            import mlflow

            mlflow.set_tracking_uri(tracking.tracking_uri)
            tags = dict(tracking.tags or {})
            resuming = resumed_at is not None
            killed, status = self._unfinished_run(resuming)
            # A kill after a checkpoint is resumed; one before the first is started over.
            verb = "resumed" if resuming else "restarted"
            if resuming:
                tags |= {"sail.resumed_at_step": str(resumed_at)}
            if killed:
                tags[f"sail.{verb}_from_run"] = killed
            run = mlflow.start_run(
                experiment_id=tracking.experiment_id,
                run_name=tracking.run_name,
                parent_run_id=tracking.parent_run_id,
                nested=tracking.parent_run_id is not None,
                tags=tags,
            )
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            log_table_inputs(inputs or {})
            self._mlflow = mlflow
            self.run_id = run.info.run_id
            self._run_file.write_text(json.dumps({"run_id": run.info.run_id}))
            _replay(kept, run.info.run_id)
            if killed:
                client = mlflow.MlflowClient()
                client.set_tag(killed, f"sail.{verb}_by_run", run.info.run_id)
                if status == "RUNNING":  # a kill; a failed stage's run stays FAILED
                    client.set_terminated(killed, status="KILLED")
            said = "" if not killed else (
                f", resuming the interrupted run {killed} with its {len(kept)} logged steps"
                if resuming else
                f", starting over the interrupted run {killed}, which left no checkpoint")
            log.info("logging to MLflow run %s (parent %s)%s", run.info.run_id,
                     tracking.parent_run_id, said)

    def _kept_lines(self, resumed_at: int | None) -> list[dict]:
        if resumed_at is None or not self.path.exists():
            return []
        rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        return [row for row in rows if row.get("step", 0) <= resumed_at]

    def _unfinished_run(self, resuming: bool) -> tuple[str | None, str | None]:
        """The run of this stage's last process and its status, unless that run finished: a
        stage run again after it finished starts a run of its own, linked to nothing."""
        try:
            run_id = json.loads(self._run_file.read_text())["run_id"]
        except (OSError, ValueError, KeyError):
            return None, None
        import mlflow

        try:
            status = mlflow.MlflowClient().get_run(run_id).info.status
        except Exception:  # noqa: BLE001 - another tracking store, or the run deleted
            return (run_id, None) if resuming else (None, None)
        return (None, None) if status == "FINISHED" and not resuming else (run_id, status)

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


def _replay(rows: list[dict], run_id: str) -> None:
    """The kept lines of a resumed stage into its new MLflow run, in batches."""
    if not rows:
        return
    import time

    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(key, float(value), now, int(row.get("step", 0))) for row in rows
               for key, value in row.items()
               if key != "step" and isinstance(value, int | float) and not isinstance(value, bool)]
    client = mlflow.MlflowClient()
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start:start + 1000])
