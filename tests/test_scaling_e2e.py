"""`kedro run --pipelines=scaling` end to end on the micro sweep (conf/micro: the reference
variant, N = 16 and 32, one seed), in a copy of the project after `kedro run`.

One test, because each step needs the one before: the dry run's commands, the pools, one
point alone, the fit naming the missing point, the whole sweep reusing the finished point,
a re-run that trains nothing, and the MLflow tree of parent, points and their stages.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import time

import mlflow
import pandas as pd
import pytest
import yaml

from tests.conftest import RECIPE_STAGES
from tests.kills import kill_points, kill_when
from tests.project import run, start_kedro_run

POINTS = ("reference_n16_s0", "reference_n32_s0")


def _kedro(project, *args: str):
    # Wide log lines: rich wraps at 80 columns when it writes to a pipe.
    result = run(project, "kedro", "run", "--pipelines=scaling", *args, timeout=600,
                 COLUMNS="400")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _trained_stage_logs(project) -> set[str]:
    return {str(p) for p in (project / "data/06_models/scaling").glob("*/*/train.log")}


@pytest.mark.slow
def test_scaling_sweep_points_alone_fit_reuse_and_mlflow(project_copy):
    project = project_copy
    # The dry run prints one command per point (a scheduler's array), and trains nothing.
    dry = _kedro(project, "--params", "runtime.launcher.dry_run=true")
    for namespace in POINTS:
        assert f"kedro run --pipelines=scaling --namespaces={namespace}" in dry.stdout
    assert "kedro run --pipelines=scaling --nodes=fit_scaling" in dry.stdout
    assert not (project / "data/06_models/scaling").exists()

    # Each point runs alone; the fit gathers what finished and names what did not.
    _kedro(project, "--tags=scaling_pool")
    _kedro(project, f"--namespaces={POINTS[0]}")
    _kedro(project, "--tags=scaling_fit")
    report = (project / "data/08_reporting/reproduction.md").read_text()
    assert "points finished: 1 of 2" in report and f"{POINTS[1]} (not run)" in report
    assert len(_trained_stage_logs(project)) == 3  # alignment, advance, sft of one point

    # The whole sweep, SIGKILLed (its process group: Kedro, the warm trainer, the stage)
    # once the second point has started a drawn stage (this seed: its first, `alignment`)...
    [stage] = kill_points(seed=91, count=1, low=1, high=3)
    kill_when(start_kedro_run(project, "--pipelines=scaling"),
              lambda: len(_trained_stage_logs(project)) >= 3 + stage,
              f"stage {stage} of the second point", timeout_s=600, group=True)
    assert list((project / "data/06_models/scaling").glob("*.partial-*"))
    # ...then again: the finished point is reused, the killed one trains from the start and
    # its unfinished folder is removed, saying so.
    rerun = _kedro(project)
    assert "removed the unfinished work of a killed run" in rerun.stdout + rerun.stderr
    # It ends with where its curves are, after Kedro's own last line.
    output = rerun.stdout + rerun.stderr
    assert output.rindex("Scaling curves in MLflow") > output.rindex("completed successfully")
    assert "one line per variant: http://127.0.0.1:5000/#/experiments/" in output
    # One line per point as it ends, with the time left; the counts on the sweep's run.
    assert "[1/2] reference N=16 seed=0: reused · 1 left, about " in rerun.stdout
    assert re.search(r"\[2/2\] reference N=32 seed=0: trained in \d+s · all 2 done in ",
                     rerun.stdout), rerun.stdout[-3000:]
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    try:
        counted = mlflow.search_runs(search_all_experiments=True, filter_string=(
            "tags.`sail.progress.scaling` = '2 of 2 done (1 reused), 0 running, 0 failed'"))
    finally:
        mlflow.set_tracking_uri(None)
    assert len(counted) == 1 and counted["metrics.progress/scaling/done"].iloc[0] == 2
    assert not list((project / "data/06_models/scaling").glob("*.partial-*"))
    results = {ns: json.loads((project / f"data/07_model_output/scaling/{ns}.json").read_text())
               for ns in POINTS}
    assert results[POINTS[0]]["reused"] and not results[POINTS[1]]["reused"]
    assert len(_trained_stage_logs(project)) == 6
    for result in results.values():
        assert result["tokens"] > 0 and 0 <= result["scores"]["pretrain/caption"] <= 1
        # The other x-axes: the pairs read (N, Alignment and Advance each half) and the steps.
        assert result["samples"] == result["n"] and result["steps"] >= 2
        assert {"sft/count", "sft/colour", "sft/average"} <= set(result["scores"])
        assert result["timing"]["alignment_seconds"] >= result["timing"]["alignment_train_seconds"]
    points = pd.read_csv(project / "data/08_reporting/scaling/points.csv")
    assert sorted(points["n"]) == [16, 32]
    report = (project / "data/08_reporting/reproduction.md").read_text()
    assert "points finished: 2 of 2" in report and "(not run)" not in report
    assert (project / "data/08_reporting/scaling/pretrain_caption.png").stat().st_size > 1000
    assert "scaling/pretrain_caption.png" in report

    # Again: nothing trains.
    _kedro(project)
    assert len(_trained_stage_logs(project)) == 6
    again = json.loads((project / f"data/07_model_output/scaling/{POINTS[1]}.json").read_text())
    assert again["reused"] and again["identity"] == results[POINTS[1]]["identity"]

    _check_mlflow(project)

    # The notebook redraws the curves from MLflow alone, run as Jupyter runs it.
    from tests.project import ROOT

    notebook, probed = execute_notebook(ROOT / "notebooks/scaling_curves.ipynb",
                                        f"sqlite:///{project / 'mlflow.db'}", NOTEBOOK_PROBE)
    assert probed["n"] == [16, 32]
    assert probed["figures"] == ["pretrain/caption", "sft/average"]
    assert probed["xscale"] == "log"
    # Its figures are drawn: a PNG for each, not the `<Figure size ...>` text of the object.
    images = [output for output in notebook_outputs(notebook) if "image/png" in output["data"]]
    assert len(images) >= len(probed["figures"])
    assert all(base64.b64decode(image["data"]["image/png"]).startswith(b"\x89PNG\r\n")
               for image in images)
    assert not [output for output in notebook_outputs(notebook)
                if output["data"].get("text/plain", "").startswith("<Figure size")
                and "image/png" not in output["data"]]

    _newcomer_path_reaches_the_curves_in_the_mlflow_ui(project)


def _newcomer_commands() -> list[str]:
    """The commands of docs/getting-started.md's newcomer path, as the page shows them."""
    from tests.project import ROOT
    from tests.test_docs_snippets import commands

    page = (ROOT / "docs/getting-started.md").read_text()
    block = page.split("<!-- newcomer-path -->", 1)[1]
    return commands(block.split("```bash\n", 1)[1].split("```", 1)[0])


def _make_recipe(target: str) -> str:
    from tests.project import ROOT

    makefile = (ROOT / "Makefile").read_text()
    return makefile.split(f"\n{target}:", 1)[1].split("\n\t", 1)[1].split("\n", 1)[0]


def _newcomer_path_reaches_the_curves_in_the_mlflow_ui(project) -> None:
    """docs/getting-started.md: from a clone to a sweep's curves in the MLflow UI.

    This test project holds the micro sizes in conf/local and its data in data/, so the page's
    `--env micro` is what it ran without the flag: `make micro` is the session's `kedro run`,
    the sweep is the `kedro run --pipelines=scaling` above. `make ui` runs here as the Makefile
    writes it, on a free port, and serves the sweep: its runs, their data sizes and scores,
    and the curves as artifacts of the sweep's run.
    """
    import socket
    import subprocess
    import urllib.parse
    import urllib.request

    from tests.project import BIN, env

    assert _newcomer_commands() == [
        "make micro", ".venv/bin/kedro run --env micro --pipelines=scaling", "make ui"]
    assert _make_recipe("micro") == "$(BIN)/kedro run --env micro"
    recipe = _make_recipe("ui")
    assert recipe.startswith("$(BIN)/mlflow ui ") and "--port $(UI_PORT)" in recipe
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = (recipe.replace("$(BIN)", str(BIN)).replace("$$", "$")
               .replace("$(CURDIR)", str(project)).replace("$(UI_PORT)", str(port)))
    server = subprocess.Popen(["bash", "-c", command], cwd=project, env=env(project),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def get(endpoint: str, **query: str) -> bytes:
        url = f"{base}{endpoint}?{urllib.parse.urlencode(query)}" if query else base + endpoint
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.read()

    try:
        deadline = time.time() + 120
        while True:
            try:
                assert b"<html" in get("/").lower()  # the UI's page
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                assert time.time() < deadline, "the MLflow UI did not start in 120 s"
                time.sleep(1)
        experiment = json.loads(get("/api/2.0/mlflow/experiments/get-by-name",
                                    experiment_name="sail_pipeline"))["experiment"]
        runs = json.loads(urllib.request.urlopen(urllib.request.Request(
            f"{base}/api/2.0/mlflow/runs/search", method="POST",
            headers={"Content-Type": "application/json"},
            data=json.dumps({"experiment_ids": [experiment["experiment_id"]],
                             "max_results": 1000}).encode()), timeout=30).read())["runs"]

        def tags(run: dict) -> dict[str, str]:
            return {t["key"]: t["value"] for t in run["data"].get("tags", [])}

        sweeps = [r for r in runs if tags(r).get("mlflow.runName", "").startswith("scaling ·")]
        assert sweeps, "the page's step 1: a run named `scaling · …`"
        newest = max(sweeps, key=lambda r: r["info"]["start_time"])  # the last sweep run
        points = [r for r in runs
                  if tags(r).get("mlflow.parentRunId") == newest["info"]["run_id"]]
        assert sorted(tags(r)["mlflow.runName"] for r in points) == [
            "reference N=16 seed=0", "reference N=32 seed=0"]
        for point in points:  # step 3: the chart's axes
            metrics = {m["key"] for m in point["data"]["metrics"]}
            assert {"data_size", "log10_data_size", "sft/average"} <= metrics
        # Step 2: the curves, as artifacts of the sweep's run, served by the UI.
        listed = json.loads(get("/api/2.0/mlflow/artifacts/list",
                                run_id=newest["info"]["run_id"], path="scaling"))
        curves = [f["path"] for f in listed.get("files", [])]
        assert "scaling/pretrain_caption.png" in curves, curves
        png = get("/get-artifact", path="scaling/pretrain_caption.png",
                  run_uuid=newest["info"]["run_id"])
        assert png.startswith(b"\x89PNG") and len(png) > 1000
        # Step 4: the link on the sweep's page opens the chart view on its lines; the server
        # takes its filter and returns one line per variant, score against N as the step.
        link = tags(newest)["mlflow.note.content"].split("seed mean](", 1)[1].split(")", 1)[0]
        path, query = link.split("/#/experiments/", 1)[1].split("/runs?", 1)
        query = urllib.parse.parse_qs(query)
        assert query["compareRunsMode"] == ["CHART"]
        lines = json.loads(urllib.request.urlopen(urllib.request.Request(
            f"{base}/api/2.0/mlflow/runs/search", method="POST",
            headers={"Content-Type": "application/json"},
            data=json.dumps({"experiment_ids": [path], "filter": query["searchFilter"][0]}
                            ).encode()), timeout=30).read())["runs"]
        assert [tags(r)["mlflow.runName"] for r in lines] == ["reference · mean of seed 0"]
        history = json.loads(get("/api/2.0/mlflow/metrics/get-history",
                                 run_id=lines[0]["info"]["run_id"], metric_key="sft/average"))
        assert [int(m["step"]) for m in history["metrics"]] == [16, 32]
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def _check_mlflow(project) -> None:
    """The whole-sweep run that trained N=32: parent -> one child per point (named for it, N
    as metrics) -> the trainer's stages under the point that trained; the fit in the parent."""
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True)
    sweeps = runs[runs["tags.mlflow.runName"].fillna("").str.startswith("scaling ·")]
    children_of = {p: runs[runs["tags.mlflow.parentRunId"] == p] for p in sweeps["run_id"]}
    trained = [p for p, children in children_of.items()
               if len(children) == 2 and (children["tags.sail.reused"] == "false").any()]
    assert len(trained) == 1, "one whole-sweep run trained a point"
    parent = sweeps[sweeps["run_id"] == trained[0]].iloc[0]
    children = children_of[trained[0]]
    assert sorted(children["tags.mlflow.runName"]) == ["reference N=16 seed=0",
                                                       "reference N=32 seed=0"]
    assert sorted(children["metrics.data_size"]) == [16, 32]
    assert children["metrics.log10_data_size"].round(3).tolist().count(1.505) == 1
    assert set(children["params.variant"]) == {"reference"}
    assert children["metrics.sft/average"].notna().all()
    point = children[children["tags.sail.reused"] == "false"].iloc[0]
    stages = runs[runs["tags.mlflow.parentRunId"] == point["run_id"]]
    assert sorted(stages["tags.sail.stage"]) == ["advance", "alignment", "knowledge"]
    assert parent["metrics.scaling/points_finished"] == 2
    assert not [c for c in runs.columns if c.startswith("metrics.fit/")], "the fit is a table"
    assert parent["tags.mlflow.runName"].startswith("scaling · reference · N 16–32 (2 sizes)")
    artifacts = mlflow.MlflowClient().list_artifacts(parent["run_id"], "scaling")
    assert any(a.path.endswith("pretrain_caption.png") for a in artifacts)
    assert any(a.path == "scaling/fits.json" for a in artifacts)
    # the curves: a line per variant, score against N as the step
    curves = runs[runs["tags.sail.sweep"] == parent["run_id"]]
    assert sorted(curves["tags.mlflow.runName"]) == ["reference · mean of seed 0",
                                                     "reference · seed 0"]
    line = curves[curves["tags.sail.curve"] == "mean"].iloc[0]
    history = mlflow.MlflowClient().get_metric_history(line["run_id"], "sft/average")
    assert [m.step for m in history] == [16, 32]
    assert "[one line per variant, the seed mean](http" in parent["tags.mlflow.note.content"]


# Run after the notebook's own cells, in its kernel: what they left, printed as one JSON line.
NOTEBOOK_PROBE = """import json
print(json.dumps({"n": sorted(int(n) for n in points["n"]), "figures": sorted(figures),
                  "xscale": figures["sft/average"].axes[0].get_xscale()}))"""


def execute_notebook(path, tracking_uri: str, probe: str) -> tuple:
    """Run a notebook as Jupyter does: nbclient, in the python3 kernel of this .venv, from the
    notebook's folder, with MLFLOW_TRACKING_URI set; then `probe`, a cell of the test's own,
    in the same kernel. Returns the executed notebook (in memory: the file keeps its cleared
    outputs) and the JSON the probe printed. A failing cell fails with its source and error.
    """
    import sys
    from pathlib import Path

    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    committed = json.loads(path.read_text())
    assert all(not cell.get("outputs") and cell.get("execution_count") is None
               for cell in committed["cells"] if cell["cell_type"] == "code"), \
        f"{path} is committed with outputs: clear them"
    notebook = nbformat.reads(path.read_text(), as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(probe))
    # The kernelspec ipykernel installs into this .venv (`make install`), never a user's or the
    # system's; jupyter_client starts its `python` as sys.executable, this .venv's interpreter.
    specs = KernelSpecManager(kernel_dirs=[str(Path(sys.prefix) / "share/jupyter/kernels")])
    manager = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=specs)
    client = NotebookClient(notebook, km=manager, timeout=600,
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        # cleanup_kc: shut the kernel down afterwards, although the manager is ours.
        client.execute(cleanup_kc=True,
                       env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri})
    except CellExecutionError as error:
        raise AssertionError(f"notebook cell failed:\n{error}") from error
    printed = "".join(output.get("text", "") for output in notebook.cells[-1].outputs
                      if output["output_type"] == "stream" and output["name"] == "stdout")
    notebook.cells.pop()
    return notebook, json.loads(printed.strip().splitlines()[-1])


def notebook_outputs(notebook) -> list:
    """The rich outputs (display_data, execute_result) of an executed notebook's code cells."""
    return [output for cell in notebook.cells if cell["cell_type"] == "code"
            for output in cell["outputs"]
            if output["output_type"] in ("display_data", "execute_result")]


def _metrics_files(tree) -> list[dict]:
    """Every `data/08_reporting/scaling_metrics.json` entry of `dvc exp show --json`."""
    found = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key.endswith("scaling_metrics.json") and isinstance(value, dict):
                found.append(value.get("data", value))
            else:
                found += _metrics_files(value)
    elif isinstance(tree, list):
        for value in tree:
            found += _metrics_files(value)
    return found


@pytest.mark.slow
def test_dvc_queue_runs_one_experiment_per_size(project_copy):
    """README "Scaling sweeps with DVC": one queued experiment per size, one worker, read back
    with `dvc exp show --json`; MLflow gets each experiment's runs in the project's store."""
    project = project_copy
    # The micro sweep into the stage's own params file, so that `-S` changes only `scaling`.
    local_file = project / "conf/local/parameters.yml"
    local = yaml.safe_load(local_file.read_text())
    sweep = local.pop("scaling")
    local_file.write_text(yaml.safe_dump(local))
    base_file = project / "conf/base/parameters_scaling.yml"
    base = yaml.safe_load(base_file.read_text())
    base["scaling"] |= sweep
    base_file.write_text(yaml.safe_dump(base))
    # What the README asks first: the chain's state committed, so DVC's temporary copies check
    # the pool and the backbones out of its cache.
    for args in (("dvc", "commit", "--force", "--quiet", *RECIPE_STAGES),
                 ("git", "add", "-A"),
                 ("git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "run")):
        result = run(project, *args)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for n in (16, 32):
        queued = run(project, "dvc", "exp", "run", "--queue", "-S",
                     f"conf/base/parameters_scaling.yml:scaling.sizes=[{n}]", "scaling")
        assert queued.returncode == 0, queued.stdout[-2000:] + queued.stderr[-2000:]
    assert run(project, "dvc", "queue", "start", "-j", "1").returncode == 0
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        status = run(project, "dvc", "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)
    assert status.count("Success") == 2, status
    shown = run(project, "dvc", "exp", "show", "--json")
    metrics = _metrics_files(json.loads(shown.stdout))
    assert sum(1 for m in metrics if m.get("reference", {}).get("points") == 1) == 2, metrics

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    points = mlflow.search_runs(search_all_experiments=True,
                                filter_string="metrics.data_size > 0")
    assert sorted(points["metrics.data_size"]) == [16, 32]


@pytest.mark.slow
@pytest.mark.faults
def test_a_point_killed_at_drawn_stages_ends_equal_to_an_uninterrupted_one(project_copy):
    """One sweep point through `kedro run --namespaces=...`: trained whole; then its stored
    folder deleted (the fix the README gives for a damaged point) and trained again, its
    process group SIGKILLed at two drawn stages (this seed: its second and third), and run to
    the end. Its result equals the uninterrupted run's."""
    project = project_copy
    store = project / "data/06_models/scaling"
    result_path = project / f"data/07_model_output/scaling/{POINTS[0]}.json"
    _kedro(project, "--tags=scaling_pool")
    _kedro(project, f"--namespaces={POINTS[0]}")
    whole = json.loads(result_path.read_text())
    shutil.rmtree(store / whole["identity"])

    for stage in kill_points(seed=16, count=2, low=1, high=3):
        earlier = {p.name for p in store.glob("*.partial-*")}  # a killed start's, until removed

        def started(stage: int = stage, earlier: set[str] = earlier) -> bool:
            return len([log for log in store.glob("*.partial-*/*/train.log")
                        if log.parent.parent.name not in earlier]) >= stage

        kill_when(start_kedro_run(project, "--pipelines=scaling", f"--namespaces={POINTS[0]}"),
                  started, f"stage {stage} of the point", timeout_s=600, group=True)

    again = _kedro(project, f"--namespaces={POINTS[0]}")
    assert "removed the unfinished work of a killed run" in again.stdout + again.stderr
    assert not list(store.glob("*.partial-*"))
    result = json.loads(result_path.read_text())
    assert not result["reused"] and result["identity"] == whole["identity"]
    assert result["tokens"] == whole["tokens"]
    assert sorted(result["scores"]) == sorted(whole["scores"])
    for key, value in whole["scores"].items():
        assert abs(result["scores"][key] - value) < 1e-6, (key, result["scores"][key], value)
