"""Seconds for a trainer process to import what it needs: with the venv's compiled bytecode
against without it.

Every training stage, and every point of a scaling sweep, starts new trainer processes. Where
PYTHONDONTWRITEBYTECODE is set (as in CI containers) Python never caches bytecode, so without
the .pyc files that `make install` now writes (`uv pip install --compile-bytecode`) each start
compiles torch, transformers and DeepSpeed from source again. "Without" points
PYTHONPYCACHEPREFIX at an empty folder, so Python finds no .pyc and, with
PYTHONDONTWRITEBYTECODE, writes none: each start compiles, as before the change.

    python benchmarks/startup_bytecode.py --repeats 3   # prints without / with last
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

# What `python -m sail_pipeline.training.train` imports before it reads its config.
IMPORTS = "import deepspeed, transformers, sail_pipeline.training.train, sail_pipeline.modeling.presets"


def one_start(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", IMPORTS], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cached = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    with tempfile.TemporaryDirectory() as empty:
        fresh = dict(cached, PYTHONPYCACHEPREFIX=empty)
        one_start(cached)  # page cache warm for both
        with_pyc, without = [], []
        for _ in range(args.repeats):  # alternated, so drift hits both alike
            without.append(one_start(fresh))
            with_pyc.append(one_start(cached))
    a, b = statistics.median(without), statistics.median(with_pyc)
    print(f"trainer imports without bytecode: {a:.1f}s (median of {args.repeats})")
    print(f"trainer imports with bytecode:    {b:.1f}s")
    print(f"start-up speed-up from compiled bytecode: {a / b:.1f}x")


if __name__ == "__main__":
    main()
