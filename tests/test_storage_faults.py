"""Storage faults: a full disk during a shard write or a checkpoint save leaves nothing that a
re-run would trust and says what happened; a damaged shard names itself and what to do."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from sail_pipeline.captioning import shards
from sail_pipeline.errors import UserError
from sail_pipeline.storage import DiskFull, replace_text, written_whole_or_not_at_all


def _captions(n: int) -> pd.DataFrame:
    return pd.DataFrame({name: [f"{name}-{i}" for i in range(n)]
                         for name in shards._COLUMNS["captions"]})


def test_a_full_disk_during_a_shard_write_publishes_nothing(tmp_path, monkeypatch):
    real_write = shards.pq.write_table

    def half_then_full(table, handle, **kwargs):
        handle.write(b"PAR1 half a shard")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shards.pq, "write_table", half_then_full)
    with pytest.raises(DiskFull) as error:
        shards.write_shard(_captions(5), tmp_path, "captions", 0)
    message = str(error.value)
    assert str(tmp_path / shards.shard_name("captions", 0)) in message
    assert "Nothing half-written was kept" in message and "MiB free" in message
    assert isinstance(error.value, UserError)  # `kedro run` prints it, not a traceback
    assert list(tmp_path.iterdir()) == []  # neither the shard nor its temporary file

    monkeypatch.setattr(shards.pq, "write_table", real_write)  # space again: the re-run
    shards.write_shard(_captions(5), tmp_path, "captions", 0)
    assert len(shards.read_captions(tmp_path)) == 5


def test_a_full_disk_during_a_checkpoint_save_keeps_the_last_whole_one(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "step4").mkdir(parents=True)
    (checkpoints / "latest").write_text("step4")

    def save_cut_short():
        (checkpoints / "step8").mkdir()
        (checkpoints / "step8" / "mp_rank_00_model_states.pt").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFull, match="while writing .*checkpoints/step8"):
        with written_whole_or_not_at_all(checkpoints / "step8", partial=checkpoints / "step8"):
            save_cut_short()
    assert sorted(p.name for p in checkpoints.iterdir()) == ["latest", "step4"]
    assert (checkpoints / "latest").read_text() == "step4"


def test_other_write_errors_pass_through_and_still_clean_up(tmp_path):
    partial = tmp_path / "x.tmp"
    with pytest.raises(PermissionError):
        with written_whole_or_not_at_all(tmp_path / "x", partial=partial):
            partial.write_bytes(b"half")
            raise PermissionError(errno.EACCES, "read-only")
    assert not partial.exists()


def test_a_damaged_shard_names_itself_and_the_fix(tmp_path):
    path = shards.write_shard(_captions(3), tmp_path, "captions", 0)
    Path(path).write_bytes(Path(path).read_bytes()[:40])  # cut off
    with pytest.raises(ValueError, match=rf"{path} is not a readable captions shard .*move it "
                                         rf"aside and re-run to redo its ids"):
        shards.read_captions(tmp_path)


def test_a_damaged_stored_point_names_itself_and_the_fix(tmp_path):
    from sail_pipeline.engine.store import RESULT_FILE, DamagedPoint, stored_result

    (tmp_path / "abc123").mkdir()
    (tmp_path / "abc123" / RESULT_FILE).write_text('{"scores": {"sft/av')
    with pytest.raises(DamagedPoint, match=rf"{tmp_path / 'abc123' / RESULT_FILE} cannot be "
                                           rf"read .*delete {tmp_path / 'abc123'} and run again"):
        stored_result(tmp_path, "abc123")
    assert stored_result(tmp_path, "missing") is None


@pytest.fixture
def small_disk(tmp_path):
    """Mounts real file systems (tmpfs) of a given size, where the machine lets the test."""
    mounts: list[Path] = []

    def mount(size: str) -> Path:
        folder = tmp_path / f"disk{len(mounts)}"
        folder.mkdir()
        if os.geteuid() != 0 or subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                capture_output=True).returncode:
            pytest.skip("mounting a tmpfs needs root (the simulated ENOSPC tests above still run)")
        mounts.append(folder)
        return folder

    yield mount
    for folder in mounts:
        subprocess.run(["umount", "--lazy", str(folder)], capture_output=True)


@pytest.fixture
def tiny_disk(small_disk):
    """A real 256 KiB file system."""
    return small_disk("256k")


def test_a_real_full_disk_during_a_shard_write_publishes_nothing(tiny_disk):
    frame = pd.DataFrame({name: [os.urandom(64).hex() * 20 for _ in range(2000)]
                          for name in shards._COLUMNS["captions"]})
    with pytest.raises(DiskFull, match="no space left on the device while writing"):
        shards.write_shard(frame, tiny_disk / "out", "captions", 0)
    assert list((tiny_disk / "out").iterdir()) == []


def test_a_small_file_is_replaced_whole_or_not_at_all_on_a_real_full_disk(tiny_disk):
    latest = tiny_disk / "latest"
    replace_text(latest, "step4")
    with open(tiny_disk / "ballast", "wb", buffering=0) as ballast:  # to its last byte
        with pytest.raises(OSError, match="No space left"):
            while True:
                ballast.write(b"\0" * 4096)
    # `open(latest, "w").write(...)`, as DeepSpeed writes it, would leave it empty here.
    with pytest.raises(DiskFull, match=f"while writing {latest}"):
        replace_text(latest, "step8")
    assert latest.read_text() == "step4"
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["ballast", "latest"]


@pytest.mark.slow
@pytest.mark.faults
def test_a_real_full_disk_during_a_checkpoint_save_stops_plainly_and_resumes(
        tmp_path, small_disk, small_world, world_tokenizer):
    """DeepSpeed's save on a real 12 MiB disk: one checkpoint of the tiny model (10 MB) fits,
    the second does not. torch's writer reports that as "unexpected pos", not as ENOSPC."""
    from sail_pipeline.errors import explain
    from sail_pipeline.recipe_data import conversation_table
    from sail_pipeline.schema import LauncherParams, RuntimeParams, TrainParams
    from sail_pipeline.training.config import RunConfig, TrackingConfig
    from sail_pipeline.training.launcher import StageStopped, launch

    conversation_table(small_world.scenes, small_world.conversations).to_parquet(
        tmp_path / "train.parquet")
    world_tokenizer.save_pretrained(tmp_path / "tokenizer")
    disk = small_disk("12m")
    cfg = RunConfig(kind="vlm", stage="full", output_dir=str(disk / "full"),
                    train_data=str(tmp_path / "train.parquet"),
                    eval_data=str(tmp_path / "train.parquet"),
                    tokenizer_path=str(tmp_path / "tokenizer"),
                    train=TrainParams(steps=10, lr=1e-3, micro_batch_size=2, grad_accum=2,
                                      max_seq_len=256, log_every=1, save_every=4, eval_samples=4),
                    tracking=TrackingConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                                            run_name="full"),
                    runtime=RuntimeParams(threads=1, seed=3))
    with pytest.raises(StageStopped) as stopped:
        launch(cfg, LauncherParams())
    checkpoints = disk / "full" / "checkpoints"
    assert (checkpoints / "step4").is_dir(), "the first checkpoint no longer fits in 12 MiB"
    # What `kedro run` prints: one line naming the tag folder, not DeepSpeed's traceback.
    shown = explain(stopped.value)
    assert shown.startswith("StageStopped: training stage 'full': DiskFull: ")
    assert f"no space left on the device while writing {checkpoints / 'step8'}" in shown
    assert "Traceback" not in shown
    assert (checkpoints / "latest").read_text() == "step4"
    assert sorted(p.name for p in checkpoints.iterdir() if p.is_dir()) == ["step4"]
    assert not [p for p in checkpoints.rglob("*") if ".tmp" in p.name]
    import mlflow  # the stopped stage's run says so (MLflow's exit hook said FINISHED)

    mlflow.set_tracking_uri(cfg.tracking.tracking_uri)
    [stopped_run] = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert stopped_run.info.status == "FAILED"

    subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)  # space again
    summary = launch(cfg, LauncherParams())
    assert summary["resumed_at_step"] == 4 and summary["steps"] == 10
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED"]
    assert "resumed from" in (disk / "full" / "train.log").read_text()
