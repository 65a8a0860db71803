"""Sweep points per hour: this project's one-command sweep against one `dvc exp run` per point.

Runs a fixed grid twice in a throw-away copy of the project, side by side in one run:

- **ours**: `kedro run --pipelines=scaling`, one process for every point, the point store
  emptied first so that every point trains;
- **DVC queue**: what a user without this project would do: one
  `dvc exp run --queue -S ...` per point (its variant, size and seed), then
  `dvc queue start -j 1` (DVC's queue is unreliable with more workers), each experiment a
  `kedro run` of one point in DVC's temporary copy.

It prints points per hour for each and, for ours, where a point's wall time goes (from each
point's stored result and its stages' telemetry):

| part | what it counts |
|---|---|
| start-up | the trainer's imports, model build or load, DeepSpeed engine, MLflow run; starting the stage process and reading its result |
| tables | reading and encoding the stage's table; writing the point's tables |
| training | optimizer steps and the in-stage eval loss |
| evaluation | the benchmark after pretraining and after the SFT |
| storage/MLflow | saving checkpoints |
| outside the chain | per point: Kedro's start-up, loading the sweep's inputs, the pools, the point's MLflow child run, identities, the fit (the sweep's wall time less its chains, over its points) |

*Fixed cost* is everything but training and evaluation; its share is given at the grid's
smallest size, where it weighs most. The *ceiling* is the points per hour if nothing but
training and evaluation were left: no sweep runner can beat it without changing the results,
so it bounds the ratio to the DVC queue too.

`--before COMMIT` runs the same grid with an older commit's code in the same run (its lock
file must be HEAD's: it runs in this environment), for a before-and-after ratio.

Needs the chain's data for the configuration (`make micro` for `--env micro`, `make run` for
`--env base`).

    python benchmarks/sweep_throughput.py --env micro        # 8 points: ours ~1 min, DVC ~12
    python benchmarks/sweep_throughput.py --env base         # 12 points of the default sweep
    python benchmarks/sweep_throughput.py --env micro --no-dvc --ray   # and on a local Ray
    python benchmarks/sweep_throughput.py --env base --before ba7f7bc  # and before #29
    python benchmarks/sweep_throughput.py --from-store data/06_models/scaling  # a sweep run

`--from-store` runs nothing: it splits the points already in a store (a sweep you ran) by
size, the chain's parts only (what happened outside the chains needs the sweep's own clock;
on Ray, points that ran at once shared the cores, and each one's parts are its own seconds).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.project import init_dvc, make_project, run  # noqa: E402

# The grids: a slice of each configuration's sweep (variants x sizes x seeds).
GRIDS = {
    "micro": {"variants": ["reference", "alt_text"], "sizes": [16, 32], "seeds": [0, 1]},
    "base": {"variants": ["reference", "alt_text"], "sizes": [125, 300, 700], "seeds": [0, 1]},
}
DATA = {"micro": ROOT / "data/micro", "base": ROOT / "data"}
RECIPE_STAGES = ("data", "backbones", "curation", "captioning", "quality", "pretrain", "sft",
                 "evaluation")
STORE = "data/06_models/scaling"
# The trainer's start-up phases inside its wall clock; its imports and rendezvous come before
# the clock starts, so they are in the stage's seconds less its trainer's (counted once there).
STARTUP_PHASES = ("model", "engine", "tracking")
PARTS = ("start-up", "tables", "training", "evaluation", "storage/MLflow", "outside the chain")
FIXED = ("start-up", "tables", "storage/MLflow", "outside the chain")


def copy_project(env: str, target: Path, source: Path = ROOT, dvc: bool = True) -> Path:
    """A copy of the project at `source` whose `conf/local` is `env`'s parameters and whose
    data/ is `env`'s chain; with `dvc`, a git + DVC repository with the recipe stages
    committed to DVC's cache."""
    data = DATA[env]
    if not (data / "06_models/llm").exists():
        sys.exit(f"{data} has no chain: run `make {'micro' if env == 'micro' else 'run'}` first")
    target.mkdir(parents=True)
    project = make_project(target, source)
    if env == "micro":
        micro = yaml.safe_load((project / "conf/micro/parameters.yml").read_text())
        (project / "conf/local/parameters.yml").write_text(yaml.safe_dump(micro))
    ignore = shutil.ignore_patterns("micro", "small", "scaling", "selection")
    shutil.copytree(data, project / "data", ignore=ignore)
    if not dvc:
        return project
    init_dvc(project)
    for args in (("dvc", "commit", "--force", "--quiet", *RECIPE_STAGES), ("git", "add", "-A"),
                 ("git", "-c", "user.name=b", "-c", "user.email=b@e", "commit", "-qm", "chain")):
        _check(run(project, *args, timeout=1800), args)
    return project


def _check(result, what) -> None:
    if result.returncode != 0:
        sys.exit(f"{' '.join(what)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def set_grid(project: Path, grid: dict) -> None:
    """The grid into the sweep's own parameters file (what `dvc exp run -S` edits)."""
    local = project / "conf/local/parameters.yml"
    if local.exists():  # the configuration's other scaling keys stay; its grid is replaced
        params = yaml.safe_load(local.read_text()) or {}
        sweep = params.pop("scaling", {})
        local.write_text(yaml.safe_dump(params))
    else:
        sweep = {}
    path = project / "conf/base/parameters_scaling.yml"
    base = yaml.safe_load(path.read_text())
    base["scaling"] |= sweep | grid
    path.write_text(yaml.safe_dump(base))


def older_tree(commit: str, target: Path) -> Path:
    """`commit`'s files in `target`, for a before-and-after run in this environment: refused
    when its lock file differs (its code would run on packages it was not locked with)."""
    lock = subprocess.run(["git", "diff", "--quiet", commit, "HEAD", "--", "requirements"],
                          cwd=ROOT, check=False)
    if lock.returncode != 0:
        sys.exit(f"{commit} was locked with other requirements than HEAD: install it in a "
                 "clone of its own and run this benchmark there")
    target.mkdir(parents=True)
    tree = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=tree.stdout, check=True)
    return target


def ours(project: Path, *params: str) -> float:
    shutil.rmtree(project / STORE, ignore_errors=True)
    started = time.perf_counter()
    args = ["kedro", "run", "--pipelines=scaling"]
    for value in params:
        args += ["--params", value]
    # The copy's own code, in Kedro and in every process it starts (the warm trainer, the
    # stages), not the package this environment has installed from the checkout.
    _check(run(project, *args, timeout=7200, PYTHONPATH=str(project / "src")), args)
    return time.perf_counter() - started


def scores(project: Path) -> dict[str, dict]:
    """Each point's scores, from its result file."""
    return {path.stem: json.loads(path.read_text())["scores"]
            for path in (project / "data/07_model_output/scaling").glob("*.json")}


def dvc_queue(project: Path, grid: dict) -> float:
    code = {"PYTHONPATH": str(project / "src")}  # the copy's code, as in `ours`
    started = time.perf_counter()
    params = "conf/base/parameters_scaling.yml:scaling"
    for variant in grid["variants"]:
        for n in grid["sizes"]:
            for seed in grid["seeds"]:
                args = ("dvc", "exp", "run", "--queue", "-S", f"{params}.variants=[{variant}]",
                        "-S", f"{params}.sizes=[{n}]", "-S", f"{params}.seeds=[{seed}]",
                        "scaling")
                _check(run(project, *args, **code), args)
    _check(run(project, "dvc", "queue", "start", "-j", "1", **code), ["dvc", "queue", "start"])
    while True:
        status = run(project, "dvc", "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    elapsed = time.perf_counter() - started
    if status.count("Success") != points_in(grid):
        sys.exit(f"the DVC queue did not finish every point:\n{status}")
    return elapsed


def points_in(grid: dict) -> int:
    return len(grid["variants"]) * len(grid["sizes"]) * len(grid["seeds"])


def split(store: Path) -> dict[int, dict[str, float]]:
    """Seconds per part for the mean point of each size, from the store's results."""
    by_size: dict[int, list[dict[str, float]]] = defaultdict(list)
    for result_file in store.glob("*/result.json"):
        result = json.loads(result_file.read_text())
        timing, parts = result["timing"], dict.fromkeys(PARTS[:-1], 0.0)
        for stage in result["stages"] + ["sft"]:
            if f"{stage}_seconds" not in timing:  # taken from the prefix cache, not trained
                continue
            phases = json.loads((result_file.parent / stage / "summary.telemetry.json")
                                .read_text())["phases"]
            parts["start-up"] += sum(phases.get(p, 0.0) for p in STARTUP_PHASES)
            parts["start-up"] += timing[f"{stage}_seconds"] - timing[f"{stage}_train_seconds"]
            parts["tables"] += phases.get("data", 0.0)
            parts["training"] += phases.get("train", 0.0) + phases.get("eval", 0.0)
            parts["storage/MLflow"] += phases.get("save", 0.0) + phases.get("checkpoint", 0.0)
        parts["evaluation"] = sum(v for k, v in timing.items() if k.startswith("eval_"))
        # What the chain did between its stages: writing tables, deleting checkpoints.
        parts["tables"] += timing["total_seconds"] - sum(
            v for k, v in timing.items() if k != "total_seconds" and not k.endswith(
                "_train_seconds"))
        parts["chain"] = timing["total_seconds"]
        by_size[result["n"]].append(parts)
    return {n: {k: sum(p[k] for p in rows) / len(rows) for k in rows[0]} | {"points": len(rows)}
            for n, rows in sorted(by_size.items())}


def print_split(per_size: dict[int, dict[str, float]], outside: float | None) -> None:
    """The per-size table; without `outside` (a store read afterwards), the chain's parts."""
    parts_shown = PARTS if outside is not None else PARTS[:-1]
    print("\n| N | points | " + " | ".join(parts_shown) + " | point | fixed share |")
    print("|---" * (len(parts_shown) + 4) + "|")
    for n, parts in per_size.items():
        parts["outside the chain"] = outside or 0.0
        total = parts["chain"] + parts["outside the chain"]
        fixed = sum(parts[k] for k in FIXED)
        print(f"| {n} | {parts['points']:.0f} | "
              + " | ".join(f"{parts[k]:.1f}s" for k in parts_shown)
              + f" | {total:.1f}s | {fixed / total:.0%} |")
    print(flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", choices=sorted(GRIDS), default="micro")
    parser.add_argument("--no-dvc", action="store_true", help="skip the DVC-queue baseline")
    parser.add_argument("--keep", action="store_true", help="keep the project copy")
    parser.add_argument("--ray", action="store_true", help="also run ours on a local Ray, "
                        "one point per CPU at once (runtime.points.kind=ray)")
    parser.add_argument("--before", metavar="COMMIT",
                        help="also run the grid with COMMIT's code (same lock file), in the "
                        "same run: the before-and-after ratio")
    parser.add_argument("--from-store", type=Path, metavar="STORE",
                        help="run nothing: split the finished points of STORE by size")
    args = parser.parse_args()
    if args.from_store is not None:
        print_split(split(args.from_store), outside=None)
        return
    grid = GRIDS[args.env]
    points = points_in(grid)
    folder = Path(tempfile.mkdtemp(prefix="sweep-throughput-"))
    try:
        project = copy_project(args.env, folder / "project")
        set_grid(project, grid)
        print(f"grid ({args.env}): {grid} = {points} points", flush=True)
        wall = ours(project)
        per_size = split(project / STORE)
        outside = wall / points - sum(
            parts["chain"] for parts in per_size.values()) / len(per_size)
        print(f"ours: {wall:.0f}s, {points / wall * 3600:.0f} points/hour", flush=True)
        print_split(per_size, outside)
        kept = sum((parts["training"] + parts["evaluation"]) * parts["points"]
                   for parts in per_size.values()) / points
        print(f"ours without any fixed cost (training and evaluation only): "
              f"{3600 / kept:.0f} points/hour, the ceiling for this grid", flush=True)
        if args.before:
            older = copy_project(args.env, folder / "before",
                                 older_tree(args.before, folder / "before-tree"), dvc=False)
            set_grid(older, grid)
            before = ours(older)
            print(f"before ({args.before}): {before:.0f}s, {points / before * 3600:.0f} "
                  f"points/hour; ours {points / wall * 3600:.0f}: {before / wall:.2f}x",
                  flush=True)
        if args.ray:
            sequential = scores(project)
            on_ray = ours(project, "runtime.points.kind=ray")
            same = sum(scores(project)[k] == v for k, v in sequential.items())
            print(f"ours on a local Ray: {on_ray:.0f}s, {points / on_ray * 3600:.0f} points/hour "
                  f"({wall / on_ray:.2f}x the sequential run; same scores {same}/{points})",
                  flush=True)
        if args.no_dvc:
            print(f"ours: {points / wall * 3600:.0f} points/hour ({points} points, {args.env})")
            return
        baseline = dvc_queue(project, grid)
        print(f"DVC queue: {baseline:.0f}s, {points / baseline * 3600:.0f} points/hour "
              f"(the ceiling above would be {baseline / points / kept:.1f}x it)", flush=True)
        print(f"ours {points / wall * 3600:.0f} points/hour, DVC queue "
              f"{points / baseline * 3600:.0f} points/hour: {baseline / wall:.1f}x "
              f"({points} points, {args.env})")
    finally:
        if args.keep:
            print(f"project copy kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
