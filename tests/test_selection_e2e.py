"""`kedro run --pipelines=selection` end to end on the micro world (conf/micro: one seed, a
few rows per point), in a copy of the project after `kedro run`: every experiment (curriculum
vs all-in-one included) writes its tables and figure, the base mixture composition and incremental evaluation share trains once,
a re-run trains nothing, and MLflow holds one run per experiment with a child per point."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest

from tests.kills import kill_points, kill_when
from tests.project import run, start_kedro_run


def _kedro(project, *args: str):
    result = run(project, "kedro", "run", "--pipelines=selection", *args, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _stored(project) -> list[str]:
    return sorted(p.parent.name for p in (project / "data/06_models/selection").glob(
        "*/result.json"))


def _kill_mid_experiment(project) -> set[str]:
    """Start the selection run, SIGKILL its whole process group once a drawn number of points
    is stored (this seed: 1); the stored identities."""
    [points] = kill_points(seed=59, count=1, low=1, high=3)
    kill_when(start_kedro_run(project, "--pipelines=selection"), lambda: len(_stored(project)) >= points, f"{points} stored points",
              timeout_s=600, group=True)
    return set(_stored(project))


@pytest.mark.slow
def test_selection_experiments_run_share_points_and_track(project_copy):
    project = project_copy
    # Killed anywhere: the next run reuses what finished, retrains the rest, and removes the
    # killed point's unfinished folder.
    finished = _kill_mid_experiment(project)
    _kedro(project)
    reports = project / "data/08_reporting/selection"
    every = pd.concat([pd.read_csv(reports / f"{name}_points.csv") for name in
                       ("quality", "composition", "incremental", "schedule")])
    assert finished <= set(every.loc[every["reused"], "identity"])
    assert not list((project / "data/06_models/selection").glob("*.partial-*"))
    for name in ("quality", "composition", "incremental", "schedule"):
        assert (reports / f"{name}.png").stat().st_size > 1000
    quality = pd.read_csv(reports / "quality_points.csv")
    assert len(quality) == 2 * 2  # two candidates, two sizes, one seed
    assert {"sft/average", "sft/caption", "sft/count"} <= set(quality.columns)
    composition = pd.read_csv(reports / "composition_points.csv")
    incremental = pd.read_csv(reports / "incremental_points.csv")
    base = composition.query("variant == 'base'")["identity"].tolist()
    assert base == incremental.query("step == 'base'")["identity"].tolist()
    assert incremental.query("step == 'base'")["reused"].all()  # trained by composition
    selected = json.loads((reports / "incremental_selected.json").read_text())
    assert set(selected) == {"selected", "min_gain", "alpha"}
    # Curriculum vs all-in-one at 3 sizes: the curriculum's 3 stages trained one after another.
    schedule = pd.read_csv(reports / "schedule_points.csv")
    assert len(schedule) == 2 * 3
    assert set(schedule["stages"]) == {"knowledge+instruction+preference", "knowledge"}
    report = (project / "data/08_reporting/selection_schedule.md").read_text()
    assert "The curriculum beats all-in-one SFT on the same data" in report
    stored = [json.loads((project / "data/06_models/selection" / i / "result.json").read_text())
              for i in schedule["identity"]]
    assert sorted(len(r["stages"]) for r in stored) == [1, 1, 1, 3, 3, 3]
    # quality 4 + composition 3 (base, halve each of its two groups) + incremental 1 new
    # + schedule 6
    assert len(_stored(project)) == 4 + 3 + 1 + 6

    # Again (one experiment, to keep the suite short): every point is reused.
    stored = _stored(project)
    _kedro(project, "--tags=selection_quality")
    assert _stored(project) == stored
    assert pd.read_csv(reports / "quality_points.csv")["reused"].all()

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    by_id = {r.info.run_id: r for r in runs}
    experiments = {r.data.tags.get("sail.instance"): r for r in runs
                   if r.data.tags.get("sail.instance", "").startswith("selection_")
                   and "." not in r.data.tags["sail.instance"]}
    assert {"selection_quality", "selection_composition", "selection_incremental",
            "selection_schedule"} <= set(experiments)
    points = [r for r in runs if r.data.tags.get("mlflow.runName", "").startswith("quality: ")]
    assert len(points) >= 4
    for point in points:
        assert point.data.tags["sail.instance"].startswith("selection_quality.")
        parent = by_id[point.data.tags["mlflow.parentRunId"]]
        assert parent.data.tags["sail.instance"] == "selection_quality"
        assert "sft/average" in point.data.metrics
    # The trainer's run of a point that trained is the point's child.
    stages = [r for r in runs if r.data.tags.get("sail.stage") == "knowledge"
              and r.data.tags.get("sail.instance", "").startswith("selection_quality.")]
    assert stages and all(by_id[r.data.tags["mlflow.parentRunId"]] in points for r in stages)


@pytest.mark.slow
def test_an_experiment_added_as_a_grid_and_an_analysis_runs_on_micro(project_copy):
    """README.md's worked example, `lr_sweep`, through the selection pipeline: three points
    trained from the pretrained checkpoint, each an MLflow child run, the table written."""
    project = project_copy
    _kedro(project, "--params", "selection.experiments=[lr_sweep]")
    points = pd.read_csv(project / "data/08_reporting/selection/lr_sweep_points.csv")
    assert sorted(points["lr_factor"]) == [0.5, 1.0, 2.0]
    assert points["sft/average"].notna().all() and not points["reused"].any()
    assert len(_stored(project)) == 3 and "seconds" not in points
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True)
    named = set(runs["tags.mlflow.runName"].dropna())
    assert {f"lr_sweep: lr x{f} seed=0" for f in (0.5, 1.0, 2.0)} <= named
