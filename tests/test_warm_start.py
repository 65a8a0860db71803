"""A stage forked from the warm trainer trains exactly as a cold one, fails as loudly, and the
warm process never outlives the run that started it."""

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from sail_pipeline.recipe_data import conversation_table
from sail_pipeline.schema import LauncherParams, RuntimeParams, TrainParams
from sail_pipeline.training import warm
from sail_pipeline.training.config import RunConfig, TrackingConfig
from sail_pipeline.training.launcher import TrainingFailed, launch, starts_warm

FIXED = ("imports", "rendezvous", "model", "data", "engine", "tracking")


@pytest.fixture(scope="module")
def stage_inputs(tmp_path_factory, small_world, world_tokenizer):
    folder = tmp_path_factory.mktemp("warm")
    conversation_table(small_world.scenes, small_world.conversations).to_parquet(
        folder / "train.parquet")
    world_tokenizer.save_pretrained(folder / "tokenizer")
    return folder


def _config(folder: Path, name: str, **changes) -> RunConfig:
    values = dict(kind="vlm", stage=name, output_dir=str(folder / name),
                  train_data=str(folder / "train.parquet"), eval_data=str(folder / "train.parquet"),
                  tokenizer_path=str(folder / "tokenizer"),
                  train=TrainParams(steps=3, lr=1e-3, micro_batch_size=2, max_seq_len=256,
                                    log_every=1, eval_samples=4),
                  tracking=TrackingConfig(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",
                                          run_name=name),
                  runtime=RuntimeParams(threads=1, seed=3))
    return RunConfig(**(values | changes))


def test_only_one_cpu_process_starts_warm():
    assert starts_warm(LauncherParams())
    assert not starts_warm(LauncherParams(single_process="direct"))
    assert not starts_warm(LauncherParams(num_gpus=1))  # a process that used CUDA cannot fork
    assert not starts_warm(LauncherParams(num_gpus=2))


@pytest.mark.slow
def test_a_warm_stage_trains_exactly_as_a_cold_one(stage_inputs):
    cold = launch(_config(stage_inputs, "cold"), LauncherParams(single_process="direct"))
    first = launch(_config(stage_inputs, "warm1"), LauncherParams())
    server = warm._warm
    assert server is not None and server.alive()
    second = launch(_config(stage_inputs, "warm2"), LauncherParams())
    assert warm._warm is server, "the second stage started a new warm trainer"
    for summary in (first, second):
        assert summary["logged_train_losses"] == cold["logged_train_losses"]
        assert summary["eval_loss_after"] == cold["eval_loss_after"]
        assert set(FIXED) <= set(summary["phases"])
        assert summary["seconds_to_first_step"] > 0
    # The stage's own log, as a cold start writes it; no control lines in it.
    log = (stage_inputs / "warm2" / "train.log").read_text()
    assert "step 3/3" in log and warm.MARK not in log
    # What a stage imported after its fork, the warm process imports while idle (the first
    # stage's list was taken before the second forked). It refuses to fork once it runs a
    # second Python thread; it is still serving, so none started.
    deadline = time.time() + 30
    while list(server.folder.glob("learned-*.txt")):
        assert time.time() < deadline, "the warm trainer never took what the stages imported"
        time.sleep(0.2)
    assert server.alive()
    third = launch(_config(stage_inputs, "warm3"), LauncherParams())
    assert third["logged_train_losses"] == cold["logged_train_losses"]
    # The socket is private to this user.
    assert server.socket_path.stat().st_mode & 0o077 == 0


class _Broken:
    def run(self, config_path, env):
        yield from ()  # a warm process that accepted the stage and died before forking


@pytest.mark.slow
@pytest.mark.parametrize("failure", ["cannot start", "dies before forking"])
def test_a_failing_warm_trainer_falls_back_to_a_cold_start(stage_inputs, monkeypatch, caplog,
                                                           failure):
    def broken(env):
        if failure == "cannot start":
            raise RuntimeError("the warm trainer did not start: ImportError")
        return _Broken()

    monkeypatch.setattr(warm, "warm_trainer", broken)
    summary = launch(_config(stage_inputs, f"fallback-{failure[:4]}"), LauncherParams())
    assert summary["steps"] == 3 and summary["phases"]["imports"] > 0
    assert "starting it as a fresh process" in caplog.text


@pytest.mark.slow
@pytest.mark.faults
def test_a_failing_warm_stage_raises_with_the_log_tail(stage_inputs):
    (stage_inputs / "damaged.parquet").write_bytes(b"not a parquet file")
    damaged = _config(stage_inputs, "damaged", train_data=str(stage_inputs / "damaged.parquet"))
    with pytest.raises(TrainingFailed, match="exit code 1") as failed:
        launch(damaged, LauncherParams())
    assert "Parquet" in str(failed.value) and "Traceback" in str(failed.value)


@pytest.mark.slow
@pytest.mark.faults
def test_a_killed_warm_stage_fails_and_resumes_cold(stage_inputs):
    cfg = _config(stage_inputs, "killed",
                  train=TrainParams(steps=400, lr=1e-3, micro_batch_size=2, max_seq_len=256,
                                    log_every=1, save_every=5, eval_samples=4))
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["summary"] = launch(cfg, LauncherParams())
        except TrainingFailed as error:
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    latest = stage_inputs / "killed" / "checkpoints" / "latest"
    deadline = time.time() + 240
    while not latest.exists():
        assert time.time() < deadline and thread.is_alive(), "no checkpoint was written"
        time.sleep(0.05)
    server = warm._warm
    assert server is not None
    (child,) = psutil.Process(server.process.pid).children()
    child.send_signal(signal.SIGKILL)
    thread.join(timeout=60)
    assert "exit code -9" in str(outcome["error"])
    # The checkpoint the killed child left is resumed by the next start, warm or cold.
    resumed = launch(cfg, LauncherParams(single_process="direct"))
    assert resumed["resumed_at_step"] >= 5


@pytest.mark.slow
@pytest.mark.faults
def test_the_warm_trainer_exits_with_the_process_that_started_it(tmp_path):
    script = ("import os, sys; from sail_pipeline.training import warm; "
              "w = warm.warm_trainer(dict(os.environ)); print(w.process.pid, flush=True); "
              "os._exit(0)")  # no atexit: as if the Kedro process were killed
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=240, check=True)
    pid = int(done.stdout.split()[-1])
    deadline = time.time() + 20
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.time() < deadline, "the warm trainer outlived its parent"
        time.sleep(0.2)


def test_a_stage_forked_after_priming_finds_transformers_mapping_built():
    """`warm.prime` builds transformers' checkpoint conversion mapping (about 1,000 regular
    expressions, 0.5 s of each stage's model load) in the warm process; a forked stage
    inherits it instead of building it again. Run in a fresh interpreter, which has not
    built it yet."""
    probe = ("import os, sys\n"
             "from transformers import conversion_mapping as c\n"
             "assert c._checkpoint_conversion_mapping_cache is None\n"
             "from sail_pipeline.training.warm import prime\n"
             "prime()\n"
             "pid = os.fork()\n"
             "if pid == 0:\n"
             "    os._exit(0 if c._checkpoint_conversion_mapping_cache else 3)\n"
             "sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n")
    assert subprocess.run([sys.executable, "-c", probe], timeout=120).returncode == 0


def test_a_stage_forked_from_the_warm_process_collects_only_its_own_objects():
    """`warm.settle_heap` freezes what the warm process holds, so a forked stage's full
    collections skip the inherited heap (they walked all of it, ~0.4 s a stage). The probe
    imports torch (a heap like the warm process's), settles, forks, and the child finds the
    inherited objects frozen and its own collection's tracked count small."""
    probe = ("import gc, os, sys\n"
             "import torch\n"
             "from sail_pipeline.training.warm import settle_heap\n"
             "before = len(gc.get_objects())\n"
             "settle_heap()\n"
             "pid = os.fork()\n"
             "if pid == 0:\n"
             "    frozen, tracked = gc.get_freeze_count(), len(gc.get_objects())\n"
             "    os._exit(0 if frozen > before // 2 and tracked < before // 10 else 3)\n"
             "sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n")
    assert subprocess.run([sys.executable, "-c", probe], timeout=120).returncode == 0
