"""A run's timing record: nodes timed, training stages split into their phases, the
breakdown tables and figure that tools/run_breakdown.py prints."""

import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from sail_pipeline.glue.hooks import NodeTimingHook
from sail_pipeline.glue.run_timing import RunTiming, breakdown, training_summaries
from sail_pipeline.process_stats import process_started_at

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import run_breakdown  # noqa: E402


def _summary(stage: str, **phases: float) -> dict:
    return {"stage": stage, "phases": phases, "seconds_to_first_step": 1.0, "steps": 3}


def test_training_summaries_are_found_inside_a_node_output():
    outputs = {"knowledge_model": _summary("knowledge", train=2.0),
               "points": [{"alignment": _summary("alignment", train=1.0)}],
               "table": "not a summary", "metrics": {"eval_loss": 1.0}}
    assert sorted(s["stage"] for s in training_summaries(outputs)) == ["alignment", "knowledge"]


def test_a_training_node_splits_into_its_phases_and_the_launch():
    record = {"wall_seconds": 100.0, "kedro_startup_seconds": 8.0, "between_nodes_seconds": 2.0,
              "nodes": [
                  {"node": "train_knowledge", "seconds": 30.0, "stages": [
                      {"stage": "knowledge", "phases": {"imports": 6.0, "model": 0.5,
                                                        "train": 20.0, "eval": 1.0,
                                                        "save": 0.5}}]},
                  {"node": "evaluate", "seconds": 60.0, "stages": []}]}
    nodes, phases = breakdown(record)
    assert [n["node"] for n in nodes] == ["evaluate", "train_knowledge"]
    assert nodes[1]["not training"] == pytest.approx(10.0)
    assert phases == pytest.approx({"other nodes": 60.0, "train": 20.0, "kedro": 10.0,
                                    "import": 6.0, "launch": 2.0, "eval": 1.0,
                                    "start-up": 0.5, "save": 0.5})
    assert list(phases)[0] == "other nodes"  # largest first


def test_the_hook_times_nodes_and_saves_through_the_catalog():
    hook = NodeTimingHook()
    context = SimpleNamespace(project_params=SimpleNamespace(runtime=SimpleNamespace(
        launcher=SimpleNamespace(dry_run=False))))
    hook.after_context_created(context)
    saved = {}

    class Catalog(dict):
        def save(self, name, data):
            saved[name] = data

    catalog = Catalog(run_timing=None)
    hook.before_pipeline_run({}, None, catalog)
    node = SimpleNamespace(name="train_knowledge", namespace=None)
    hook.before_node_run(node, catalog, {}, False)
    time.sleep(0.05)
    hook.after_node_run(node, catalog, {}, {"knowledge_model": _summary("knowledge", train=1.0)},
                        False)
    hook.after_pipeline_run({}, None, catalog)
    record = saved["run_timing"]
    (timed,) = record["nodes"]
    assert timed["node"] == "train_knowledge" and timed["seconds"] >= 0.05
    assert timed["stages"][0]["phases"] == {"train": 1.0}
    assert record["wall_seconds"] >= record["kedro_startup_seconds"] >= 0
    json.dumps(record)  # what the catalog's JSONDataset writes


def test_process_start_is_before_now_and_after_boot():
    started = process_started_at()
    assert started <= time.time()
    assert time.time() - started < 24 * 3600


def test_the_tool_prints_both_tables_and_draws_the_figure(tmp_path, capsys):
    timing = RunTiming(time.time() - 5)
    timing.pipeline_start()
    timing.node_start("train_knowledge")
    timing.node_end("train_knowledge", None, {"m": _summary("knowledge", imports=1.0, train=2.0)})
    path = tmp_path / "run_timing.json"
    path.write_text(json.dumps(timing.record()))
    figure = tmp_path / "breakdown.png"
    assert run_breakdown.main([str(path), "--before", str(path), "--figure", str(figure)]) == 0
    out = capsys.readouterr().out
    assert "| import | 1 |" in out and "| train_knowledge |" in out
    assert figure.stat().st_size > 0
    assert out.strip().splitlines()[-1].startswith("run: ")


def test_the_tool_names_a_missing_record(tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        run_breakdown.main([str(tmp_path / "nope.json")])


def test_each_node_records_its_own_peak_memory_and_the_trainers():
    timing = RunTiming(time.time())
    timing.pipeline_start()
    timing.node_start("big")
    block = bytearray(300 * 2**20)
    block[::4096] = b"x" * len(block[::4096])  # touched, so resident
    del block
    timing.node_end("big", None, {"m": _summary("knowledge", train=1.0) | {"peak_rss_mb": 900.0}})
    timing.node_start("small")
    timing.node_end("small", None, {})
    record = timing.record()
    big, small = record["nodes"]
    assert big["peak_rss_mb"] - small["peak_rss_mb"] > 250  # the high-water mark was reset
    assert big["stages"][0]["peak_rss_mb"] == 900.0
    assert record["peak_rss_mb"]["kedro"] == big["peak_rss_mb"]
    assert record["peak_rss_mb"]["trainer"] == 900.0 and record["peak_rss_mb"]["per_node"]
    rows, _ = breakdown(record)
    assert {r["node"]: r["trainer_peak_rss_mb"] for r in rows} == {"big": 900.0, "small": None}
