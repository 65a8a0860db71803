"""A stage killed with SIGKILL mid-run, at drawn steps, and started again continues exactly
where it was."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from sail_pipeline.recipe_data import conversation_table
from sail_pipeline.run_telemetry import read_merged
from sail_pipeline.schema import LauncherParams, RuntimeParams, TrainParams
from sail_pipeline.training.config import RunConfig, TrackingConfig, load_deepspeed_config
from sail_pipeline.training.launcher import build_command, rank_environment
from tests.kills import kill_points, kill_when

PROJECT = Path(__file__).resolve().parents[1]


def _trainer(cfg: RunConfig) -> subprocess.Popen:
    """The trainer as DeepSpeed's launcher would start it for one CPU rank."""
    config_path = cfg.save(Path(cfg.output_dir) / "run_config.json")
    launcher = LauncherParams()
    env = dict(os.environ, PYTHONUNBUFFERED="1", **rank_environment(launcher))
    log = open(Path(cfg.output_dir) / "train.log", "a")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(build_command(config_path, launcher), stdout=log,
                            stderr=subprocess.STDOUT, env=env)


def _losses(run_dir: Path) -> dict[int, float]:
    """Train loss per step; a resumed run's later line for a step replaces the killed one's."""
    losses = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "train_loss" in row:
            losses[row["step"]] = row["train_loss"]
    return losses


def _logged_steps(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return 0
    return max([json.loads(x).get("step", 0) for x in path.read_text().splitlines()] or [0])


def _steps_printed_since(log: Path, offset: int) -> int:
    """The last step the trainer printed to its log (appended to, never rewritten) after
    `offset` bytes: a process's own steps. metrics.jsonl is rewritten on resume."""
    if not log.exists():
        return 0
    with log.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode(errors="replace")
    return max([int(step) for step in re.findall(r"\] step (\d+)/\d+ ", text)] or [0])


@pytest.mark.slow
@pytest.mark.faults
def test_sigkill_mid_stage_then_rerun_matches_an_uninterrupted_run(tmp_path, world_tokenizer,
                                                                    small_world):
    conversation_table(small_world.scenes, small_world.conversations).to_parquet(
        tmp_path / "train.parquet")
    world_tokenizer.save_pretrained(tmp_path / "tokenizer")

    def config(name: str) -> RunConfig:
        return RunConfig(
            kind="vlm", stage=name, output_dir=str(tmp_path / name),
            train_data=str(tmp_path / "train.parquet"), tokenizer_path=str(tmp_path / "tokenizer"),
            eval_data=str(tmp_path / "train.parquet"),
            train=TrainParams(steps=14, lr=1e-3, micro_batch_size=2, grad_accum=2,
                              max_seq_len=256, log_every=1, save_every=4, eval_samples=4,
                              loss_norm="square"),
            tracking=TrackingConfig(tracking_uri=f"sqlite:///{tmp_path / name}.db",
                                    run_name=name),
            runtime=RuntimeParams(threads=1, seed=3, peak_tflops=1.0),
            deepspeed_config=load_deepspeed_config("zero1", PROJECT / "conf/base/deepspeed"))

    Path(tmp_path / "whole").mkdir()
    Path(tmp_path / "killed").mkdir()
    whole = _trainer(config("whole"))
    log = tmp_path / "killed" / "train.log"
    latest = tmp_path / "killed" / "checkpoints" / "latest"
    # Killed three times, after drawn steps (this seed: 3, 8, 13). A kill before step 4 leaves
    # nothing to resume from; one after step 4, 8 or 12 is logged lands in that step's save.
    resumed_at = []
    for target in kill_points(seed=67, count=3, low=2, high=13):
        started_at = log.stat().st_size if log.exists() else 0
        kill_when(_trainer(config("killed")),
                  lambda since=started_at, step=target: _steps_printed_since(log, since) >= step,
                  f"step {target}")
        resumed_at.append(int(latest.read_text().removeprefix("step")) if latest.exists() else 0)
        assert not (tmp_path / "killed" / "summary.json").exists()
        assert not list(latest.parent.glob(".latest.tmp-*"))  # `latest` is whole or absent
    assert resumed_at == sorted(resumed_at) and resumed_at[-1] >= 4, resumed_at

    # A changed config is refused, not resumed into a mixture of two runs.
    changed = _trainer(config("killed").model_copy(
        update={"runtime": RuntimeParams(threads=1, seed=4, peak_tflops=1.0)}))
    assert changed.wait(timeout=240) != 0
    assert "holds checkpoints of a run with another config" in (
        tmp_path / "killed" / "train.log").read_text()

    resumed = _trainer(config("killed"))
    assert resumed.wait(timeout=240) == 0, (tmp_path / "killed" / "train.log").read_text()[-3000:]
    assert whole.wait(timeout=240) == 0, (tmp_path / "whole" / "train.log").read_text()[-3000:]
    log = (tmp_path / "killed" / "train.log").read_text()
    assert "resumed from" in log and f"at step {resumed_at[-1]}" in log

    expected, got = _losses(tmp_path / "whole"), _losses(tmp_path / "killed")
    assert sorted(got) == sorted(expected) == list(range(1, 15))
    for step in expected:
        assert abs(got[step] - expected[step]) < 1e-6, (step, got[step], expected[step])
    # The learning-rate schedule continued too (the scheduler was restored, not restarted).
    lrs = {json.loads(x)["step"]: json.loads(x).get("lr") for x in
           (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()}
    whole_lrs = {json.loads(x)["step"]: json.loads(x).get("lr") for x in
                 (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()}
    assert lrs[14] == whole_lrs[14]
    # Throughput telemetry on every logged step (MFU because a peak was given).
    telemetry = [json.loads(x) for x in
                 (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()
                 if "train_loss" in x][-1]
    for key in ("tokens_per_s", "samples_per_s", "data_wait_fraction", "padding_fraction",
                "tflops_per_gpu", "mfu", "peak_memory_gib"):
        assert telemetry[key] >= 0, key
    assert 0 < telemetry["mfu"] < 1
    summary = read_merged(tmp_path / "killed" / "summary.json")
    assert summary["mask_mismatches"] == 0 and summary["padding_fraction"] < 0.2
    assert not (tmp_path / "killed" / "checkpoints").exists()

    # The summary and the MLflow run say what an uninterrupted run says: the "before"
    # evaluation happened in the killed process, and is carried in the checkpoint.
    whole_summary = read_merged(tmp_path / "whole" / "summary.json")
    assert summary["resumed_at_step"] == resumed_at[-1]
    assert whole_summary["resumed_at_step"] is None
    for key in ("eval_loss_before", "eval_loss_after", "final_train_loss"):
        assert abs(summary[key] - whole_summary[key]) < 1e-6, key
    # No step twice in the curve (the killed process's steps 9.. were trained again).
    steps = [json.loads(x)["step"] for x in
             (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
             if "train_loss" in x]
    assert steps == list(range(1, 15))

    import mlflow

    def runs(name: str) -> list:
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path / name}.db")
        return mlflow.search_runs(search_all_experiments=True, output_format="list")

    def history(name: str, run, key: str) -> dict[int, float]:
        client = mlflow.MlflowClient(f"sqlite:///{tmp_path / name}.db")
        return {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}

    (whole_run,), killed_runs = runs("whole"), runs("killed")
    # One run per start but the changed config's, which failed before it opened one.
    [finished] = [r for r in killed_runs if r.info.status == "FINISHED"]
    killed = [r for r in killed_runs if r.info.status == "KILLED"]
    assert len(killed) == len(killed_runs) - 1 == 3
    # Each killed run names the run that resumed it, or started it over when the kill came
    # before the first checkpoint (step 3 here): one chain, ending at the finished run.
    resumed_by = {r.info.run_id: r.data.tags.get("sail.resumed_by_run")
                  or r.data.tags["sail.restarted_by_run"] for r in killed}
    successors = set(resumed_by.values())
    assert len(successors) == 3 and finished.info.run_id in successors
    assert successors - {finished.info.run_id} < set(resumed_by)
    assert finished.data.tags["sail.resumed_at_step"] == str(resumed_at[-1])
    for key in ("train_loss", "eval_loss_before", "eval_loss_after", "lr"):
        ours, theirs = history("killed", finished, key), history("whole", whole_run, key)
        assert sorted(ours) == sorted(theirs), key
        assert all(abs(ours[k] - theirs[k]) < 1e-6 for k in theirs), key
