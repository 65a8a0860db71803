"""A stage killed with SIGKILL mid-run and started again continues exactly where it was."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from sail_pipeline.recipe_data import conversation_table
from sail_pipeline.schema import LauncherParams, RuntimeParams, TrainParams
from sail_pipeline.training.config import RunConfig, TrackingConfig, load_deepspeed_config
from sail_pipeline.training.launcher import build_command, rank_environment

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


@pytest.mark.slow
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
    killed = _trainer(config("killed"))
    deadline = time.time() + 240
    # Past the step-8 checkpoint (step 9 is logged after it is saved), before the step-12 one.
    # Steps take tens of milliseconds here: polling every 0.2 s once let the run reach step 12.
    while _logged_steps(tmp_path / "killed") < 9:
        assert killed.poll() is None, (tmp_path / "killed" / "train.log").read_text()[-3000:]
        assert time.time() < deadline, "the run to kill never got to step 9"
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert (tmp_path / "killed" / "checkpoints" / "latest").read_text().strip() == "step8"
    assert not (tmp_path / "killed" / "summary.json").exists()

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
    assert "resumed from" in log and "at step 8" in log

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
    summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert summary["mask_mismatches"] == 0 and summary["padding_fraction"] < 0.2
    assert not (tmp_path / "killed" / "checkpoints").exists()

    # The summary and the MLflow run say what an uninterrupted run says: the "before"
    # evaluation happened in the killed process, and is carried in the checkpoint.
    whole_summary = json.loads((tmp_path / "whole" / "summary.json").read_text())
    assert summary["resumed_at_step"] == 8 and whole_summary["resumed_at_step"] is None
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
    by_status = {r.info.status: r for r in killed_runs}
    assert sorted(by_status) == ["FINISHED", "KILLED"]  # the changed config failed at start
    finished, killed_run = by_status["FINISHED"], by_status["KILLED"]
    assert killed_run.data.tags["sail.resumed_by_run"] == finished.info.run_id
    assert finished.data.tags["sail.resumed_at_step"] == "8"
    for key in ("train_loss", "eval_loss_before", "eval_loss_after", "lr"):
        ours, theirs = history("killed", finished, key), history("whole", whole_run, key)
        assert sorted(ours) == sorted(theirs), key
        assert all(abs(ours[k] - theirs[k]) < 1e-6 for k in theirs), key
