"""Seconds for one sweep point's command: trained fresh against reused by its identity.

Runs `kedro run --pipelines=scaling --namespaces=<point>` twice for a point outside the
default grid (seed 7 by default): first with the point's folder removed from the identity
store, so it trains (Alignment, evaluation, the fixed SFT, evaluation), then again, when it is
found and loaded. Both are whole `kedro run` processes, so both pay Kedro's start-up; the
ratio is what reuse saves a re-run. Needs `make run` first (the pools and backbones) and
`kedro run --pipelines=scaling --tags=scaling_pool` (the pools) if the sweep never ran.

    python benchmarks/sweep_reuse.py            # prints fresh / reused last
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEDRO = Path(sys.executable).parent / "kedro"


def run_point(variant: str, n: int, seed: int) -> float:
    params = f"scaling.sizes=[{n}],scaling.seeds=[{seed}],scaling.variants=[{variant}]"
    started = time.perf_counter()
    subprocess.run([str(KEDRO), "run", "--pipelines=scaling", "--params", params,
                    f"--namespaces={variant}_n{n}_s{seed}"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="alignment_only")
    parser.add_argument("--n", type=int, default=125)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    result_file = ROOT / f"data/07_model_output/scaling/{args.variant}_n{args.n}_s{args.seed}.json"
    if result_file.exists():  # a finished point from an earlier run: train it afresh
        identity = json.loads(result_file.read_text())["identity"]
        shutil.rmtree(ROOT / "data/06_models/scaling" / identity, ignore_errors=True)
    fresh = run_point(args.variant, args.n, args.seed)
    reused = run_point(args.variant, args.n, args.seed)
    assert json.loads(result_file.read_text())["reused"], "the second run did not reuse"
    print(f"point {args.variant} N={args.n} seed={args.seed}, one `kedro run` each")
    print(f"trained fresh: {fresh:.1f}s")
    print(f"reused by identity: {reused:.1f}s")
    print(f"re-run speed-up from reuse: {fresh / reused:.1f}x")


if __name__ == "__main__":
    main()
