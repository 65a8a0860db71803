"""What the project exposes: servers on 127.0.0.1 unless told otherwise, no remote code, no
pickles loaded from disk except through the allow-list of `training.safe_checkpoint`."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sail_pipeline.captioning.local_server import serve_canned
from sail_pipeline.schema import LauncherParams
from sail_pipeline.training.launcher import rank_environment

ROOT = Path(__file__).resolve().parents[1]
CODE = [p for folder in ("src", "tools", "benchmarks") for p in (ROOT / folder).rglob("*.py")]


def _grep(pattern: str) -> list[str]:
    regex = re.compile(pattern)
    return [f"{p.relative_to(ROOT)}:{n}" for p in CODE
            for n, line in enumerate(p.read_text().splitlines(), 1) if regex.search(line)]


def test_the_local_server_listens_on_loopback_only():
    with serve_canned() as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        try:
            urllib.request.urlopen(server.base_url.removesuffix("/v1") + "/nothing", timeout=5)
        except urllib.error.HTTPError as error:  # reachable on loopback: any answer will do
            assert error.code in (404, 405)


def test_training_ranks_rendezvous_on_loopback_and_the_make_servers_bind_it():
    assert rank_environment(LauncherParams())["MASTER_ADDR"] == "127.0.0.1"
    makefile = (ROOT / "Makefile").read_text()
    for command in ("mlflow ui", "kedro viz run"):
        line = next(x for x in makefile.splitlines() if command in x)
        assert "--host 127.0.0.1" in line, line


def test_no_remote_code_and_no_unguarded_unpickling():
    assert _grep(r"trust_remote_code\s*=\s*True") == []
    # torch.load only in the allow-listed checkpoint reader; no pickle/joblib loads at all
    assert _grep(r"(?<!`)\btorch\.load\(") == [
        "src/sail_pipeline/training/safe_checkpoint.py:40"]
    reader = (ROOT / "src/sail_pipeline/training/safe_checkpoint.py").read_text().splitlines()
    assert "weights_only=True" in reader[40 - 1]
    assert _grep(r"\b(pickle|joblib|dill)\.loads?\(") == []
    # Weights are written as safetensors (transformers' default, never turned off), so that
    # what a later stage loads is never a pickle.
    assert _grep(r"safe_serialization\s*=\s*False") == []


def _listening(pid: int) -> list[str]:
    import subprocess

    lines = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout.splitlines()
    return [line.split()[3] for line in lines if f"pid={pid}," in line]


@pytest.mark.slow
@pytest.mark.faults
def test_a_training_stage_listens_on_loopback_only(tmp_path, small_world, world_tokenizer):
    import time

    from sail_pipeline.recipe_data import conversation_table
    from sail_pipeline.schema import RuntimeParams, TrainParams
    from sail_pipeline.training.config import RunConfig, load_deepspeed_config
    from tests.test_resume import _logged_steps, _trainer

    conversation_table(small_world.scenes, small_world.conversations).to_parquet(
        tmp_path / "train.parquet")
    world_tokenizer.save_pretrained(tmp_path / "tokenizer")
    (tmp_path / "run").mkdir()
    process = _trainer(RunConfig(
        kind="vlm", stage="knowledge", output_dir=str(tmp_path / "run"),
        train_data=str(tmp_path / "train.parquet"), tokenizer_path=str(tmp_path / "tokenizer"),
        train=TrainParams(steps=400, lr=1e-3, micro_batch_size=2, max_seq_len=256,
                          log_every=1, eval_samples=0),
        runtime=RuntimeParams(threads=1, seed=0),
        deepspeed_config=load_deepspeed_config("zero2", ROOT / "conf/base/deepspeed")))
    try:
        deadline = time.monotonic() + 240
        while _logged_steps(tmp_path / "run") < 2:  # past the rendezvous, training
            assert process.poll() is None, (tmp_path / "run" / "train.log").read_text()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.1)
        addresses = _listening(process.pid)
    finally:
        process.kill()
        process.wait()
    # gloo listens (on loopback); no TCP store on every interface, as env:// would start
    assert addresses and all(a.startswith(("127.0.0.1:", "[::1]:")) for a in addresses), addresses


_RANK = """
import json, os, sys, time
import torch, torch.distributed as dist
from deepspeed.ops import __compatible_ops__
from sail_pipeline.training.rendezvous import init_process_group
# Not what is tested, and a C++ build of a minute in a fresh environment: DeepSpeed's
# shared-memory all-reduce for CPU ranks (it opens no socket).
__compatible_ops__["deepspeed_shm_comm"] = False
init_process_group("gloo")
total = torch.tensor([float(dist.get_rank() + 1)])
dist.all_reduce(total)
print("RESULT", json.dumps({"rank": dist.get_rank(), "sum": total.item()}), flush=True)
sys.stdin.readline()  # listening, until the test has looked
dist.barrier()
"""


def _result(stdout) -> dict:
    """The rank's RESULT line; DeepSpeed prints its own lines before it."""
    for line in stdout:
        if line.startswith("RESULT "):
            return json.loads(line.removeprefix("RESULT "))
    return {}


@pytest.mark.slow
@pytest.mark.faults
def test_two_ranks_rendezvous_at_master_addr_only_not_on_every_interface():
    """Two ranks as DeepSpeed's launcher starts them on one node: the rank-0 store listens on
    MASTER_ADDR alone (env:// would listen on `:::port`), and the ranks still meet."""
    import os
    import subprocess
    import sys

    from sail_pipeline.training.launcher import free_port

    port = free_port()
    ranks = [subprocess.Popen(
        [sys.executable, "-c", _RANK], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                 MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1"))
        for rank in range(2)]
    try:
        said = [_result(rank.stdout) for rank in ranks]
        listening = {rank.pid: _listening(rank.pid) for rank in ranks}
        for rank in ranks:
            rank.stdin.write("done\n")
            rank.stdin.flush()
        assert [rank.wait(timeout=120) for rank in ranks] == [0, 0]
    finally:
        for rank in ranks:
            rank.kill()
    assert [s.get("sum") for s in said] == [3.0, 3.0], said
    assert f"127.0.0.1:{port}" in listening[ranks[0].pid]  # the store, served by rank 0
    addresses = [a for pid_addresses in listening.values() for a in pid_addresses]
    assert all(a.startswith("127.0.0.1:") for a in addresses), addresses


def test_a_master_addr_of_another_machine_fails_at_rendezvous_naming_the_setting():
    from sail_pipeline.errors import UserError
    from sail_pipeline.training.launcher import free_port
    from sail_pipeline.training.rendezvous import listen_on

    with pytest.raises(UserError, match=r"cannot listen on MASTER_ADDR '192\.0\.2\.1' .*"
                                        r"runtime\.launcher\.master_addr"):
        listen_on("192.0.2.1", free_port())  # TEST-NET-1: never an address of this machine
    with pytest.raises(UserError, match="does not resolve"):
        listen_on("no-such-host.invalid", free_port())
