"""Are two runs' numbers the same to the digit? The recipe's evaluation table, the micro sweep's
points and fit, and the micro selection run's decisions, from two projects' `data/` folders.

    python tools/same_numbers.py BEFORE_PROJECT AFTER_PROJECT

Each project must have run `kedro run` (the recipe's table) and, for the micro experiments,
`kedro run --env micro`, `... --env micro --pipelines=scaling` and `--pipelines=selection`.
Columns that describe the run rather than its results (a point's identity, whether it was
reused, its wall time) are left out of the comparison. Exits 1 when a number differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

# Tables compared, relative to a project: (what it is, its path, the columns that identify
# a row).
TABLES = (
    ("recipe evaluation", "data/08_reporting/evaluation_scores.csv", ["checkpoint", "task"]),
    ("micro sweep points", "data/micro/08_reporting/scaling/points.csv",
     ["variant", "n", "seed"]),
    ("micro sweep fit", "data/micro/08_reporting/scaling/fits.csv", ["variant", "metric"]),
    ("micro selection quality", "data/micro/08_reporting/selection/quality_points.csv",
     ["candidate", "size", "seed"]),
    ("micro selection quality ranking", "data/micro/08_reporting/selection/quality_ranking.csv",
     ["candidate", "size"]),
    ("micro selection composition", "data/micro/08_reporting/selection/composition_effects.csv",
     ["variant"]),
    ("micro selection incremental", "data/micro/08_reporting/selection/incremental_trajectory.csv",
     ["step"]),
    ("micro selection schedule", "data/micro/08_reporting/selection/schedule_points.csv",
     ["variant", "n", "seed"]),
)
JSONS = (("micro selection kept", "data/micro/08_reporting/selection/incremental_selected.json"),)
# What a row says about the run, not about the result.
RUN_COLUMNS = {"identity", "reused", "seconds", "timing", "finished"}
RUN_PREFIXES = ("seconds_", "time/")  # a point's wall time by phase


def compare_table(before: Path, after: Path, keys: list[str]) -> tuple[int, list[str]]:
    """(values compared, the differences) of two CSV tables."""
    a, b = pd.read_csv(before), pd.read_csv(after)
    columns = sorted(c for c in (set(a.columns) & set(b.columns)) - RUN_COLUMNS
                     if not c.startswith(RUN_PREFIXES))
    only = sorted(c for c in set(a.columns) ^ set(b.columns)
                  if c not in RUN_COLUMNS and not c.startswith(RUN_PREFIXES))
    problems = [f"columns only in one: {only}"] if only else []
    a, b = a[columns].set_index(keys).sort_index(), b[columns].set_index(keys).sort_index()
    if list(a.index) != list(b.index):
        return 0, [*problems, f"rows differ: {sorted(set(a.index) ^ set(b.index))}"]
    compared = 0
    for column in a.columns:
        for key, x, y in zip(a.index, a[column], b[column], strict=True):
            compared += 1
            same = (pd.isna(x) and pd.isna(y)) or x == y
            if not same:
                problems.append(f"{key} {column}: {x!r} -> {y!r}")
    return compared, problems


def stored_losses(project: Path) -> dict[str, float]:
    """Every micro experiment point's held-out losses from its stored result, by the point's
    name: continuous numbers of the training itself (the micro models' scores are mostly 0)."""
    losses: dict[str, float] = {}
    for path in sorted((project / "data/micro/06_models/scaling").glob("*/result.json")):
        result = json.loads(path.read_text())
        for stage, pair in result["losses"].items():
            for when, value in pair.items():
                losses[f"sweep {result['namespace']} {stage} {when}"] = value
    for path in sorted((project / "data/micro/06_models/selection").glob("*/result.json")):
        result = json.loads(path.read_text())
        losses[f"selection {result['label']}"] = result["loss_after"]
    return losses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    failed = False
    print("| what | values compared | differences |\n|---|---|---|")
    for name, path, keys in TABLES:
        before, after = args.before / path, args.after / path
        if not (before.exists() and after.exists()):
            print(f"| {name} | missing in {'before' if not before.exists() else 'after'} | — |")
            failed = True
            continue
        compared, problems = compare_table(before, after, keys)
        failed |= bool(problems)
        print(f"| {name} | {compared} | {len(problems)} |")
        for problem in problems[:10]:
            print(f"|   {problem} | | |")
    for name, path in JSONS:
        same = json.loads((args.before / path).read_text()) == json.loads(
            (args.after / path).read_text())
        failed |= not same
        print(f"| {name} | 1 | {0 if same else 1} |")
    before, after = stored_losses(args.before), stored_losses(args.after)
    differ = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    failed |= bool(differ) or not before
    print(f"| micro points' held-out losses | {len(before)} | {len(differ)} |")
    for key in differ[:10]:
        print(f"|   {key}: {before.get(key)!r} -> {after.get(key)!r} | | |")
    print("\nthe same to the digit" if not failed else "\nDIFFERENT")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
