"""A warm trainer: one process that has imported the trainer's dependencies once, and forks a
fresh child for every training stage.

Each stage paid ~6 s of imports (torch, transformers, DeepSpeed, MLflow) before its first step
(benchmarks/stage_startup.py); `make run` starts ten stages, a sweep dozens. The warm process
imports them once per `kedro run`. A stage is still a process of its own: a child forked from
the warm process, with the stage's environment and working folder. It runs the same
`sail_pipeline.training.train.main` as a cold start and keeps its state (checkpoints, summary,
MLflow run) on disk, so kill-and-resume is unchanged. Its output goes to the launcher
over a Unix socket (a file in a private temporary folder, mode 0600, never a network port).

CPU only: a process that has touched CUDA cannot fork children that use it, so GPU runs (and
`runtime.launcher.single_process: direct`) start each stage cold.

    python -m sail_pipeline.training.warm --socket PATH --parent PID   # started by the launcher
"""

from __future__ import annotations

import argparse
import atexit
import gc
import importlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)
# What every stage imports before its first step; the rest is cheap.
PRELOAD = ("torch", "transformers", "deepspeed", "mlflow", "pandas", "pyarrow.parquet",
           "sail_pipeline.training.train", "sail_pipeline.training.tracking")
# A control line from the forked stage to the launcher; a trainer never prints it.
MARK = "\x00sail-warm "
READY = "sail-warm ready"


def _learn(folder: Path) -> None:
    """Import what earlier stages imported after the fork (each leaves a list behind), so
    later stages find it imported: the first stage of a run teaches the rest. The heap is
    settled again after new imports."""
    learned = False
    for listing in sorted(folder.glob("learned-*.txt")):
        for module in listing.read_text().split():
            if module not in sys.modules:
                try:
                    importlib.import_module(module)
                    learned = True
                except Exception:  # noqa: BLE001, S110 - a module that only imports in context
                    pass
        listing.unlink()
    if learned:
        settle_heap()


def prime() -> None:
    """Build once what every stage would build anew in its fresh child: transformers'
    checkpoint conversion mapping, whose ~1,000 regular expressions took 0.5 s of each stage's
    model load (0.6 s of a 0.75 s micro stage; `benchmarks/sweep_throughput.py`). It is a
    module-level cache, so the forked children inherit it built."""
    try:
        from transformers import conversion_mapping

        conversion_mapping.get_checkpoint_conversion_mapping("internvl")
    except (ImportError, AttributeError):  # another transformers: the stage builds it
        pass


def settle_heap() -> None:
    """Move what the warm process holds into the permanent generation, so a forked stage's
    first full collection walks only its own objects. Unfrozen, each stage's first full
    collection walked the whole inherited heap (torch, transformers, DeepSpeed): ~0.4 s of
    each stage, and the walk touches every page, so copy-on-write copied them
    (`benchmarks/sweep_throughput.py`: start-up 2.2 -> 1.5 s a point at N=32)."""
    gc.collect()
    gc.freeze()


def serve(socket_path: str, parent: int) -> None:
    """Import, then fork a child per request until the parent process is gone."""
    for module in PRELOAD:
        importlib.import_module(module)
    prime()
    settle_heap()
    folder = Path(socket_path).parent
    import torch

    if torch.cuda.is_initialized():  # children could not use the GPU
        raise SystemExit("the warm trainer initialised CUDA while importing; start cold")
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps finished stages
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(socket_path)
    os.chmod(socket_path, 0o600)
    server.listen()
    server.settimeout(1.0)
    print(READY, flush=True)
    # Nobody reads the pipe to the launcher after this line: the warm process's own output
    # (not its stages', which go to their sockets) is kept next to the socket instead.
    own_log = os.open(Path(socket_path).with_name("warm.log"), os.O_WRONLY | os.O_CREAT, 0o600)
    os.dup2(own_log, 1)
    os.dup2(own_log, 2)
    while os.getppid() == parent:
        try:
            conn, _ = server.accept()
        except TimeoutError:
            _learn(folder)
            continue
        with conn.makefile("r") as reader:
            request = json.loads(reader.readline())
        _learn(folder)
        # A Python thread could hold a lock at the fork and leave the child deadlocked. The
        # native pools already running (OpenBLAS's, jemalloc's, torch's intra-op pool) set
        # pthread_atfork handlers and start afresh in the child.
        if threading.active_count() > 1:
            raise SystemExit(f"the warm trainer has {threading.active_count()} threads")
        if os.fork() == 0:
            server.close()
            _stage(conn, request, folder)  # never returns
        conn.close()


def _die_with_parent() -> None:
    """The stage is killed when the warm process ends, which it does when the process that
    started it is gone: a killed sweep worker (a Ray task) leaves no stage training on into
    the folder its retry starts afresh."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the stage ends at its next write instead
        pass


def _stage(conn: socket.socket, request: dict, folder: Path) -> None:
    """The forked child: become the stage's process and run the trainer's main."""
    code = 1
    imported = set(sys.modules)
    try:
        _die_with_parent()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.dup2(conn.fileno(), 1)
        os.dup2(conn.fileno(), 2)
        conn.close()
        sys.stdout.reconfigure(line_buffering=True)
        sys.stderr.reconfigure(line_buffering=True)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        print(f"{MARK}pid {os.getpid()}", flush=True)
        from sail_pipeline.training import train

        code = train.main(["--config", request["config"]])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:  # noqa: BLE001 - reported through the exit line, like a cold start
        traceback.print_exc()
    finally:
        # Whatever happens here (the launcher gone, a broken pipe), the child must exit: it
        # must never fall back into the warm process's loop.
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            new = sorted(set(sys.modules) - imported)
            (folder / f"learned-{os.getpid()}.txt").write_text("\n".join(new))
            os.write(1, f"{MARK}exit {code}\n".encode())
        except BaseException:  # noqa: BLE001, S110 - nothing left to report to
            pass
        os._exit(code)


class WarmTrainer:
    """The launcher's side: starts the warm process, asks it for stages, streams their output."""

    def __init__(self, env: dict[str, str]) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="sail-warm-"))
        self.socket_path = self.folder / "trainer.sock"
        self.owner = os.getpid()
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__, "--socket", str(self.socket_path),
             "--parent", str(os.getpid())],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        started = time.perf_counter()
        assert self.process.stdout is not None
        said = []
        for line in self.process.stdout:
            if line.strip() == READY:
                break
            said.append(line)
        else:
            self.process.wait()
            raise RuntimeError("the warm trainer did not start:\n" + "".join(said[-20:]))
        self.ready_seconds = time.perf_counter() - started
        atexit.register(self.close)

    def alive(self) -> bool:
        return self.process.poll() is None and os.getpid() == self.owner

    def run(self, config_path: Path, env: dict[str, str]) -> Iterator[str]:
        """The stage's output lines; the last item is its exit code as `MARK + "exit N"`."""
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(str(self.socket_path))
        conn.sendall((json.dumps({"config": str(config_path), "env": env,
                                  "cwd": os.getcwd()}) + "\n").encode())
        with conn, conn.makefile("r", errors="replace") as lines:
            yield from lines

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


_warm: WarmTrainer | None = None


def warm_trainer(env: dict[str, str]) -> WarmTrainer:
    """This process's warm trainer, started on first use (one per process)."""
    global _warm
    if _warm is None or not _warm.alive():
        _warm = WarmTrainer(env)
        log.info("warm trainer ready in %.1fs (pid %d): stages fork from it",
                 _warm.ready_seconds, _warm.process.pid)
    return _warm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, help="Unix socket path to listen on")
    parser.add_argument("--parent", type=int, required=True, help="exit when this pid is gone")
    args = parser.parse_args(argv)
    serve(args.socket, args.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
