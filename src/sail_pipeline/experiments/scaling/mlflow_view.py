"""A sweep in MLflow's chart view: one line per variant of a score against data size.

MLflow draws a line from one run's metric *history*, and a cloud of points from many runs'
single values. So, besides the point runs (one per point, children of the sweep's run, which
`tracked.load_sweep` reads back), every sweep writes *curve runs* into a companion experiment,
`<experiment> · curves`:

- one run per variant, logging each score's seed mean with `step = N` (tag `sail.curve=mean`);
- one run per (variant, seed), each seed's own score at `step = N` (tag `sail.curve=seed`).

Both are tagged `sail.sweep=<the sweep's run id>`, so one link (`curve_links`) opens the chart
view on exactly one sweep's lines: a chart per score (`pretrain/…` after pretraining,
`sft/…` after the fixed SFT; the average and each task), a colour per variant, no clicks. The
x-axis is linear by default; each line chart's settings offer a logarithmic one (MLflow 3.17:
"X-axis" → "Log scale"), which is how the docs' screenshots show it.

The fit's coefficients are not metrics (they crowded the Y-axis picker, and a metric named
`fit/alt_text/pretrain/caption/a` was one search away from the score): they are a table
artifact of the sweep's run, `scaling/fits.json`, which the run page shows as a table.

No Kedro here.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any
from urllib.parse import quote, urlencode

import pandas as pd

from sail_pipeline import lineage
from sail_pipeline.experiments.scaling.plots import variant_colour

SWEEP_TAG = "sail.sweep"
CURVE_TAG = "sail.curve"
CURVES_SUFFIX = " · curves"
RUN_COLOUR_TAG = "mlflow.runColor"  # the UI draws a run in this colour (MLflow 3)
# Where `make ui` serves the UI (conf/base/mlflow.yml's `ui`); SAIL_MLFLOW_UI names another.
UI_VARIABLE = "SAIL_MLFLOW_UI"
DEFAULT_UI = "http://127.0.0.1:5000"
FIT_TABLE = "scaling/fits.json"
# The links the last sweep of this process wrote, printed when the Kedro run ends.
last_links: dict[str, str] = {}


def score_columns(points: pd.DataFrame) -> list[str]:
    """The scores of a points table: `pretrain/<task>` and `sft/<task>` (averages included)."""
    return sorted(c for c in points.columns if c.startswith(("pretrain/", "sft/")))


def curves(points: pd.DataFrame) -> list[dict[str, Any]]:
    """The curve runs a points table makes: name, tags, params and `{metric: {N: value}}`.

    Seed means first (one per variant), then each (variant, seed). A value that is missing
    (a task a point did not score) is left out of its line rather than drawn as zero.
    """
    scores = score_columns(points)
    # A variant's colour is its own in every line (seed means and each seed) and in the PNGs;
    # MLflow would colour each run by its id, and two variants could share one.
    colours = {str(v): variant_colour(i) for i, v in enumerate(pd.unique(points["variant"]))}
    out: list[dict[str, Any]] = []
    for variant, part in points.groupby("variant", sort=True):
        seeds = sorted(int(s) for s in part["seed"].unique())
        sizes = sorted(int(n) for n in part["n"].unique())
        means = part.groupby("n")[scores].mean()
        out.append({"name": f"{variant} · mean of {_seeds(seeds)}",
                    "curve": "mean", "variant": str(variant), "colour": colours[str(variant)],
                    "params": {"variant": variant, "seeds": _list(seeds),
                               "sizes": _list(sizes)},
                    "values": _values(means)})
    for (variant, seed), part in points.groupby(["variant", "seed"], sort=True):
        sizes = sorted(int(n) for n in part["n"].unique())
        out.append({"name": f"{variant} · seed {int(seed)}", "curve": "seed",
                    "variant": str(variant), "colour": colours[str(variant)],
                    "params": {"variant": variant, "seed": int(seed), "sizes": _list(sizes)},
                    "values": _values(part.set_index("n")[scores])})
    return out


def _values(table: pd.DataFrame) -> dict[str, dict[int, float]]:
    return {metric: {int(n): float(v) for n, v in table[metric].items()
                     if isinstance(v, int | float) and math.isfinite(v)}
            for metric in table.columns}


def _list(values: list[int]) -> str:
    return ",".join(str(v) for v in values)


def _seeds(seeds: list[int]) -> str:
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"{len(seeds)} seeds ({_list(seeds)})"


def ui_base() -> str:
    """The MLflow UI's address: `SAIL_MLFLOW_UI`, else an http tracking server, else `make ui`'s."""
    if os.environ.get(UI_VARIABLE):
        return os.environ[UI_VARIABLE].rstrip("/")
    import mlflow

    uri = mlflow.get_tracking_uri()
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else DEFAULT_UI


def curve_links(experiment_id: str, sweep_run_id: str, sweep_experiment_id: str,
                base: str | None = None) -> dict[str, str]:
    """Chart-view links of one sweep's curves (seed means; every seed) and its run's page."""
    base = base or ui_base()

    def chart(kind: str) -> str:
        query = urlencode({"searchFilter": f"tags.`{SWEEP_TAG}` = '{sweep_run_id}' and "
                                           f"tags.`{CURVE_TAG}` = '{kind}'",
                           "compareRunsMode": "CHART"}, quote_via=quote)
        return f"{base}/#/experiments/{experiment_id}/runs?{query}"

    return {"curves": chart("mean"), "seeds": chart("seed"),
            "sweep": f"{base}/#/experiments/{sweep_experiment_id}/runs/{sweep_run_id}"}


def log_sweep(points: pd.DataFrame, fits: pd.DataFrame, finished: int, missing: int
              ) -> dict[str, str]:
    """The sweep into MLflow: its fit table and counts on the sweep's run, the curve runs,
    and the links (also noted on the sweep's run page). {} when MLflow is not tracking."""
    target = lineage.tracking_target()
    if target is None:
        return {}
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    experiment_id, sweep_run_id = target
    client = MlflowClient()
    client.log_batch(sweep_run_id, metrics=[
        Metric("scaling/points_finished", float(finished), _now(), 0),
        Metric("scaling/points_missing", float(missing), _now(), 0)])
    if not fits.empty:
        client.log_table(sweep_run_id, data=_plain(fits), artifact_file=FIT_TABLE)
    if points.empty:
        return {}
    curves_id = _curves_experiment(client, experiment_id)
    sweep_name = client.get_run(sweep_run_id).data.tags.get("mlflow.runName", sweep_run_id)
    for curve in curves(points):
        run = client.create_run(curves_id, run_name=curve["name"], tags={
            SWEEP_TAG: sweep_run_id, CURVE_TAG: curve["curve"], "variant": curve["variant"],
            RUN_COLOUR_TAG: curve["colour"], "sail.sweep_name": sweep_name,
            **lineage.git_state()})
        now = _now()
        metrics = [Metric(metric, value, now, n) for metric, by_n in curve["values"].items()
                   for n, value in sorted(by_n.items())]
        for start in range(0, len(metrics), 1000):  # MLflow takes at most 1000 per batch
            client.log_batch(run.info.run_id, metrics=metrics[start:start + 1000])
        client.log_batch(run.info.run_id,
                         params=[Param(k, str(v)) for k, v in curve["params"].items()],
                         tags=[RunTag("mlflow.note.content", f"A curve of sweep {sweep_name}: "
                                      "score against data size N (the step).")])
        client.set_terminated(run.info.run_id)
    links = curve_links(curves_id, sweep_run_id, experiment_id)
    client.set_tag(sweep_run_id, "mlflow.note.content", note(links))
    last_links.clear()
    last_links.update(links)
    return links


def note(links: dict[str, str]) -> str:
    """The sweep run's description (markdown, shown on its page): where its curves are."""
    return ("**Scaling curves** (score against data size N; a chart per score, `pretrain/` "
            "after pretraining, `sft/` after the fixed SFT):\n\n"
            f"- [one line per variant, the seed mean]({links['curves']})\n"
            f"- [one line per seed]({links['seeds']})\n\n"
            f"The fit per variant and metric: the artifact `{FIT_TABLE}`; the plots with "
            "their intervals: `scaling/*.png`.")


def print_links(links: dict[str, str] | None = None) -> list[str]:
    """The lines that end a sweep's `kedro run`: where to look at its curves."""
    links = links if links is not None else last_links
    if not links:
        return []
    lines = ["Scaling curves in MLflow (start the UI with `make ui`):",
             f"  one line per variant: {links['curves']}",
             f"  one line per seed:    {links['seeds']}",
             f"  the sweep's run:      {links['sweep']}"]
    # Printed, not logged: a logger's console wraps a long line, and a link must stay whole.
    print("\n" + "\n".join(lines), flush=True)
    last_links.clear()
    return lines


def _curves_experiment(client: Any, experiment_id: str) -> str:
    name = client.get_experiment(experiment_id).name + CURVES_SUFFIX
    found = client.get_experiment_by_name(name)
    if found is None:
        curves_id = client.create_experiment(name)
    else:
        curves_id = found.experiment_id
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(curves_id)
    # Set on every sweep, so a store made by an older version reads as this one writes.
    client.set_experiment_tag(curves_id, "mlflow.note.content", (
        "One run per scaling-sweep curve: a score against data size N, which is the step. "
        f"A sweep's lines carry the tags {SWEEP_TAG} (the sweep's run id) and {CURVE_TAG} "
        "(mean: one line per variant; seed: one per variant and seed)."))
    lineage.mark_model_training(curves_id)
    return curves_id


def _plain(table: pd.DataFrame) -> pd.DataFrame:
    """A table MLflow's JSON writer takes: numbers and text only."""
    return table.apply(lambda column: column.map(
        lambda v: v if isinstance(v, int | float | str | bool) or v is None else str(v)))


def _now() -> int:
    return int(time.time() * 1000)
