"""Start the trainer under DeepSpeed's launcher as a subprocess and watch it.

CPU: one process with gloo. GPU: `num_gpus` processes with NCCL. Several nodes: a hostfile.
The command is built by one function so that a dry run shows exactly what would run.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sail_pipeline import run_telemetry
from sail_pipeline.errors import UserError
from sail_pipeline.schema import LauncherParams
from sail_pipeline.training.config import RunConfig
from sail_pipeline.training.train import HF_DIR, SUMMARY_FILE, USER_ERROR_EXIT, USER_ERROR_MARK

log = logging.getLogger(__name__)
TRAINER_MODULE = "sail_pipeline.training.train"
# DeepSpeed's launcher prints its own bookkeeping at INFO; the trainer's lines are what matter.
_NOISE = re.compile(r"\[(INFO|WARNING)\] \[(real_accelerator|runner|launch|config_utils|"
                    r"engine|logging|comm|torch)\.py")


class TrainingFailed(RuntimeError):
    pass


class StageStopped(UserError, TrainingFailed):
    """The stage stopped on something the user fixes; its message is the stage's own line."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_command(config_path: Path, launcher: LauncherParams) -> list[str]:
    """The exact command line for a run config (see `rank_environment` for its environment)."""
    if launcher.is_single_process and launcher.single_process in ("direct", "warm"):
        # (a warm start runs this same module's main in a child forked from a warm process)
        return [sys.executable, "-m", TRAINER_MODULE, "--config", str(config_path)]
    command = [sys.executable, "-m", "deepspeed.launcher.runner"]
    if launcher.hostfile:
        if not Path(launcher.hostfile).exists():
            raise FileNotFoundError(f"runtime.launcher.hostfile {launcher.hostfile} not found")
        command += ["--hostfile", launcher.hostfile, "--num_nodes", str(launcher.num_nodes)]
    if launcher.master_addr:
        command += ["--master_addr", launcher.master_addr]
    command += ["--num_gpus", str(max(1, launcher.num_gpus)),
                "--master_port", str(launcher.master_port or free_port()),
                "--module", TRAINER_MODULE, "--config", str(config_path)]
    return command


def rank_environment(launcher: LauncherParams) -> dict[str, str]:
    """What DeepSpeed's launcher would export for the only rank of a one-process run."""
    if not (launcher.is_single_process and launcher.single_process in ("direct", "warm")):
        return {}
    return {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
            "CROSS_RANK": "0", "CROSS_SIZE": "1", "MASTER_ADDR": launcher.master_addr or
            "127.0.0.1", "MASTER_PORT": str(launcher.master_port or free_port())}


def starts_warm(launcher: LauncherParams) -> bool:
    """One CPU process: fork it from the warm trainer (`training.warm`) instead of a cold start."""
    # Linux only: a forked macOS process may crash in system frameworks, and Windows has no
    # fork; there the stage starts cold.
    return launcher.single_process == "warm" and launcher.num_gpus == 0 and \
        launcher.is_single_process and sys.platform.startswith("linux")


def _output(command: list[str], config_path: Path, env: dict[str, str],
            launcher: LauncherParams) -> Iterator[str | int]:
    """The stage's output lines, then its exit code (an int) as the last item."""
    if starts_warm(launcher):
        from sail_pipeline.training import warm

        started, code = False, -signal.SIGKILL  # no exit line: the child died unreported
        try:
            for line in warm.warm_trainer(env).run(config_path, env):
                if line.startswith(warm.MARK):
                    said = line.removeprefix(warm.MARK).split()
                    started = started or said[0] == "pid"
                    code = int(said[1]) if said[0] == "exit" else code
                    continue
                yield line
        except (OSError, RuntimeError) as error:  # it could not start, or went away
            log.warning("the warm trainer failed (%s)", error)
        if started:
            yield code
            return
        # The child never started (the stage has printed nothing): run it cold instead.
        log.warning("the warm trainer did not start %s; starting it as a fresh process",
                    config_path)
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env, bufsize=1) as process:
        assert process.stdout is not None
        yield from process.stdout
        yield process.wait()


def launch(cfg: RunConfig, launcher: LauncherParams) -> dict[str, Any]:
    """Run one training job to completion; returns its summary (or the plan on a dry run).

    A dry run writes its run config to a temporary folder and nothing under `output_dir`,
    so no later run finds a half-made stage there.
    """
    out = Path(cfg.output_dir)
    if launcher.dry_run:
        config_path = cfg.save(Path(tempfile.mkdtemp(prefix=f"dry-{cfg.stage}-")) /
                               "run_config.json")
        command = build_command(config_path, launcher)
        rank_env = rank_environment(launcher)
        shown = " ".join([f"{k}={v}" for k, v in rank_env.items()] + command)
        log.info("dry run of %s: %s", cfg.stage, shown)
        print(f"[dry run] {cfg.stage}: {shown}", flush=True)
        return {"dry_run": True, "command": command, "env": rank_env,
                "config": str(config_path), "hf_dir": str(out / HF_DIR)}
    config_path = cfg.save(out / "run_config.json")
    command = build_command(config_path, launcher)
    rank_env = rank_environment(launcher)
    cfg.check_paths()
    env = dict(os.environ, PYTHONUNBUFFERED="1", **rank_env)
    log_path = out / "train.log"
    tail: collections.deque[str] = collections.deque(maxlen=launcher.tail_lines)
    log.info("%s: %s%s", cfg.stage, " ".join(command),
             " (forked from the warm trainer)" if starts_warm(launcher) else "")
    code = 1
    with log_path.open("w") as log_file:
        for line in _output(command, config_path, env, launcher):
            if isinstance(line, int):
                code = line
                break
            log_file.write(line)
            tail.append(line.rstrip())
            if not _NOISE.search(line):
                print(line.rstrip(), flush=True)
    summary_path = out / SUMMARY_FILE
    stopped = [line for line in tail if line.startswith(USER_ERROR_MARK)]
    if code == USER_ERROR_EXIT and stopped:
        raise StageStopped(f"training stage {cfg.stage!r}: "
                           f"{stopped[-1].removeprefix(USER_ERROR_MARK)} (full log: {log_path})")
    if code != 0 or not summary_path.exists():
        joined = "\n".join(tail)
        raise TrainingFailed(
            f"training stage {cfg.stage!r} failed (exit code {code}); full log: {log_path}\n"
            f"--- last {len(tail)} lines ---\n{joined}"
        )
    summary = run_telemetry.read_merged(summary_path)
    summary["hf_dir"] = str(out / HF_DIR)
    summary["run_dir"] = str(out)
    return summary
