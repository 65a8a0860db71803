"""Concurrent runs: a run locks every output before its first node; a second run that would
write one stops at start naming it and the holder; disjoint runs go side by side; a killed
run's locks are gone with it."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sail_pipeline.folder_lock import sole_writer
from sail_pipeline.glue.run_lock import LOCKS_FOLDER, OutputLocks, OutputsInUse
from tests.project import make_project, run

HOLD = """
import sys, time
from sail_pipeline.glue.run_lock import OutputLocks
OutputLocks(sys.argv[1]).acquire(sys.argv[2:], holder="pid HOLDER, the test's other run")
print("held", flush=True)
time.sleep(600)
"""


HOLD_FOLDER = """
import sys, time
from pathlib import Path
from sail_pipeline.folder_lock import sole_writer
with sole_writer(sys.argv[1], "the test's other run"):
    print("held", flush=True)
    while not Path(sys.argv[2]).exists():
        time.sleep(0.05)
"""


def _holder(data: Path, *datasets: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(data), *datasets],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_overlapping_outputs_are_refused_disjoint_ones_run_and_a_refusal_holds_nothing(tmp_path):
    first = OutputLocks(tmp_path)
    assert first.acquire(["b", "a"], holder="pid 1, first") == 2
    second = OutputLocks(tmp_path)
    assert second.acquire(["c"]) == 1  # disjoint: side by side
    with pytest.raises(OutputsInUse, match=r"a is being written by another run in this "
                                           r"project \(pid 1, first\)"):
        second.acquire(["d", "a"])
    third = OutputLocks(tmp_path)
    assert third.acquire(["d"]) == 1  # the refused run released `c` and `d`...
    assert third.acquire(["c"]) == 2
    first.release()
    assert OutputLocks(tmp_path).acquire(["a", "b"]) == 2  # released: free again


def test_a_killed_run_leaves_no_stale_lock(tmp_path):
    holder = _holder(tmp_path, "world_scenes")
    with pytest.raises(OutputsInUse, match="the test's other run"):
        OutputLocks(tmp_path).acquire(["world_scenes"])
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert (tmp_path / LOCKS_FOLDER / "world_scenes.lock").exists()  # the file stays...
    assert OutputLocks(tmp_path).acquire(["world_scenes"]) == 1     # ...its lock does not


@pytest.mark.slow
@pytest.mark.faults
def test_a_second_kedro_run_stops_at_start_naming_the_output_and_its_holder(tmp_path):
    project = make_project(tmp_path)
    holder = _holder(project / "data" / "micro", "world_scenes")
    try:
        started = time.perf_counter()
        outcome = run(project, "kedro", "run", "--env", "micro", "--pipelines=data",
                      timeout=300)
    finally:
        holder.kill()
    assert outcome.returncode == 2, outcome.stderr[-2000:]
    assert outcome.stderr.strip().splitlines()[-1].startswith(
        "OutputsInUse: world_scenes is being written by another run in this project "
        "(pid HOLDER, the test's other run)")
    assert "Traceback" not in outcome.stdout + outcome.stderr
    assert not (project / "data" / "micro" / "01_raw").exists()  # no node ran
    assert time.perf_counter() - started < 300


def _folder_holder(folder: Path, go: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD_FOLDER, str(folder), str(go)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


@pytest.mark.parametrize("ending", ["finishes", "is killed"])
def test_a_shared_folder_has_one_writer_the_other_waits_then_goes_on(tmp_path, caplog, ending):
    """A recaption shard folder or a signal cache folder that two runs with disjoint
    outputs share: the second writer waits for the first (finished or killed), never
    writes beside it, and leaves no file in the folder (a DVC output)."""
    folder = tmp_path / "recaption_shards" / "local-abc"
    folder.mkdir(parents=True)
    go = tmp_path / "go"
    holder = _folder_holder(folder, go)
    entered = threading.Event()

    def second() -> None:
        with sole_writer(folder, "recaptioning"):
            entered.set()

    with caplog.at_level("INFO", logger="sail_pipeline.glue.run_lock"):
        thread = threading.Thread(target=second)
        thread.start()
        assert not entered.wait(timeout=1.0), "the second writer did not wait"
        if ending == "finishes":
            go.touch()
        else:
            holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        thread.join(timeout=30)
    assert entered.is_set()
    assert "is being written by another run (pid" in caplog.text
    assert "waiting for it, then reusing what it wrote" in caplog.text
    assert list(folder.iterdir()) == []
