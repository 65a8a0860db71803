"""A sweep read back from MLflow: its point runs as the points table the fit takes.

What `notebooks/scaling_curves.ipynb` uses, so that curves can be redrawn from the tracking
server alone (another machine, a cluster's runs) without the project's data folder.
"""

from __future__ import annotations

import pandas as pd

_METRIC = "metrics."


def latest_sweep(experiment_names: list[str] | None = None) -> str:
    """The run id of the newest Kedro run that has sweep points as children."""
    import mlflow

    points = mlflow.search_runs(experiment_names=experiment_names,
                                search_all_experiments=experiment_names is None,
                                filter_string="metrics.data_size > 0",
                                order_by=["start_time DESC"])
    if points.empty:
        raise LookupError("no sweep point in this MLflow store: run "
                          "`kedro run --pipelines=scaling` first")
    return str(points.iloc[0]["tags.mlflow.parentRunId"])


def load_sweep(parent_run_id: str | None = None) -> pd.DataFrame:
    """One row per point of the sweep under `parent_run_id` (default: the newest sweep):
    variant, n, tokens, seed and every score, as `sail_pipeline.experiments.scaling.fit` takes them."""
    import mlflow

    parent = parent_run_id or latest_sweep()
    runs = mlflow.search_runs(search_all_experiments=True,
                              filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    runs = runs[runs.get("metrics.data_size", pd.Series(dtype=float)).notna()]
    scores = [c for c in runs.columns
              if c.startswith(_METRIC) and c.removeprefix(_METRIC).startswith(("pretrain/",
                                                                                 "sft/"))]
    table = pd.DataFrame({
        "variant": runs["params.variant"],
        "n": runs["metrics.data_size"].astype(int),
        "tokens": runs["metrics.data_tokens"].astype(int),
        "seed": runs["params.seed"].astype(int),
        "run_name": runs["tags.mlflow.runName"],
        **{c.removeprefix(_METRIC): runs[c] for c in scores},
    })
    return table.sort_values(["variant", "n", "seed"]).reset_index(drop=True)
