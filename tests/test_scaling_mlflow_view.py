"""A sweep's curves in MLflow: a line per variant (seed mean) and per seed, score against N as
the step, in a companion experiment; the fit as a table, not as metrics; the links' filters."""

from __future__ import annotations

import urllib.parse

import mlflow
import pandas as pd
import pytest

from sail_pipeline.experiments.scaling import mlflow_view
from sail_pipeline.experiments.scaling.plan import sweep_description
from sail_pipeline.schema import ScalingParams


def _points() -> pd.DataFrame:
    rows = []
    for variant, slope in (("alt_text", 1.0), ("reference", 2.0)):
        for n in (16, 64, 256):
            for seed in (0, 1):
                rows.append({"variant": variant, "n": n, "seed": seed,
                             "pretrain/caption": slope * n + seed,
                             "sft/average": slope * n / 10 + seed,
                             "sft/count": float("nan") if n == 64 else 1.0,
                             "seconds_total": 3.0})
    return pd.DataFrame(rows)


def test_curves_are_a_seed_mean_per_variant_then_each_seed_with_n_as_step():
    curves = mlflow_view.curves(_points())
    assert [c["name"] for c in curves] == [
        "alt_text · mean of 2 seeds (0,1)", "reference · mean of 2 seeds (0,1)",
        "alt_text · seed 0", "alt_text · seed 1", "reference · seed 0", "reference · seed 1"]
    mean = curves[1]
    assert mean["curve"] == "mean"
    # a variant's colour, the same in its every line and in the PNGs (tab10, in points order)
    assert [c["colour"] for c in curves] == ["#1f77b4", "#ff7f0e", "#1f77b4", "#1f77b4",
                                             "#ff7f0e", "#ff7f0e"]
    assert mean["values"]["pretrain/caption"] == {16: 32.5, 64: 128.5, 256: 512.5}
    assert curves[3]["values"]["sft/average"] == {16: 2.6, 64: 7.4, 256: 26.6}
    # a score a point lacks is a gap in the line, not a zero
    assert curves[0]["values"]["sft/count"] == {16: 1.0, 256: 1.0}
    assert "seconds_total" not in mean["values"]


@pytest.fixture()
def tracking(tmp_path, monkeypatch):
    monkeypatch.delenv(mlflow_view.UI_VARIABLE, raising=False)
    # `set_experiment` exports MLFLOW_EXPERIMENT_ID, which a trainer started later by another
    # test in this process would inherit: monkeypatch puts the variable back as it was.
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("sail_pipeline")
    yield mlflow.MlflowClient()
    mlflow.set_tracking_uri(None)
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)


def test_a_sweep_logs_its_curves_fit_table_and_links(tracking):
    fits = pd.DataFrame([{"variant": "alt_text", "metric": "sft/average", "a": 1.0, "b": 0.5,
                          "law": "log_linear"}])
    with mlflow.start_run(run_name="scaling · test") as sweep:
        links = mlflow_view.log_sweep(_points(), fits, finished=12, missing=0)
    sweep_id = sweep.info.run_id
    run = tracking.get_run(sweep_id)
    # the fit is a table artifact, not a metric the Y-axis picker lists
    assert set(run.data.metrics) == {"scaling/points_finished", "scaling/points_missing"}
    assert "scaling/fits.json" in [a.path for a in tracking.list_artifacts(sweep_id, "scaling")]
    assert links["curves"] in run.data.tags["mlflow.note.content"]

    curves_experiment = tracking.get_experiment_by_name("sail_pipeline · curves")
    assert curves_experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert f"/#/experiments/{curves_experiment.experiment_id}/runs?" in links["curves"]
    assert links["curves"].startswith(mlflow_view.DEFAULT_UI)
    assert links["sweep"].endswith(f"/runs/{sweep_id}")
    # the filter a link carries selects exactly that sweep's lines of that kind
    for kind, expected in (("curves", 2), ("seeds", 4)):
        query = urllib.parse.parse_qs(links[kind].split("?", 1)[1])
        assert query["compareRunsMode"] == ["CHART"]
        found = tracking.search_runs([curves_experiment.experiment_id],
                                     filter_string=query["searchFilter"][0])
        assert len(found) == expected
    means = tracking.search_runs([curves_experiment.experiment_id],
                                 filter_string="tags.`sail.curve` = 'mean'")
    reference = next(r for r in means if r.data.tags["variant"] == "reference")
    history = tracking.get_metric_history(reference.info.run_id, "pretrain/caption")
    assert [(m.step, m.value) for m in history] == [(16, 32.5), (64, 128.5), (256, 512.5)]
    assert reference.data.params == {"variant": "reference", "seeds": "0,1",
                                     "sizes": "16,64,256"}
    assert reference.data.tags["sail.sweep_name"] == "scaling · test"
    assert reference.data.tags["mlflow.runColor"] == "#ff7f0e"

    # a second sweep's lines are not under the first one's link
    with mlflow.start_run(run_name="scaling · other"):
        mlflow_view.log_sweep(_points().query("variant == 'alt_text'"), fits, 6, 0)
    query = urllib.parse.parse_qs(links["curves"].split("?", 1)[1])
    assert len(tracking.search_runs([curves_experiment.experiment_id],
                                    filter_string=query["searchFilter"][0])) == 2
    lines = mlflow_view.print_links()
    assert lines[0].startswith("Scaling curves in MLflow") and mlflow_view.last_links == {}


def test_without_tracking_nothing_is_logged_and_nothing_printed():
    assert mlflow.active_run() is None
    assert mlflow_view.log_sweep(_points(), pd.DataFrame(), 12, 0) == {}
    assert mlflow_view.print_links({}) == []


def test_the_ui_address_follows_an_http_tracking_server_or_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv(mlflow_view.UI_VARIABLE, raising=False)
    mlflow.set_tracking_uri("http://tracking.example:8080/")
    try:
        assert mlflow_view.ui_base() == "http://tracking.example:8080"
        monkeypatch.setenv(mlflow_view.UI_VARIABLE, "http://127.0.0.1:5001/")
        assert mlflow_view.ui_base() == "http://127.0.0.1:5001"
    finally:
        mlflow.set_tracking_uri(None)


def test_sweep_names_tell_sweeps_apart():
    small = ScalingParams.model_construct(sizes=[16, 32, 64, 128], seeds=[0, 1],
                                          variants=["alt_text", "reference"])
    assert sweep_description(small) == "alt_text,reference · N 16–128 (4 sizes) · seeds 0,1"
    default = ScalingParams.model_construct(sizes=[125, 300, 700, 1700, 4000], seeds=[0, 1, 2, 3],
                                            variants=["alt_text", "reference", "recaption",
                                                      "frozen_llm"])
    assert sweep_description(default) == "4 variants · N 125–4k (5 sizes) · 4 seeds"
