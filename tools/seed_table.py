"""Mean ± standard deviation over seeds of evaluation score tables, as a Markdown table.

Each argument is `label=path/to/evaluation_scores*.csv` (a glob: one file per seed, as
`kedro run` writes data/08_reporting/evaluation_scores.csv). Rows are label × checkpoint,
columns the tasks; e.g.

    python tools/seed_table.py before='runs/before_s*.csv' after='runs/after_s*.csv' \
        --checkpoints knowledge preference --tasks world_caption world_count average
"""

from __future__ import annotations

import argparse
import glob
import sys

import pandas as pd


def seed_table(groups: dict[str, list[str]], checkpoints: list[str] | None,
               tasks: list[str] | None) -> str:
    frames = []
    for label, files in groups.items():
        for seed, file in enumerate(sorted(files)):
            frames.append(pd.read_csv(file).assign(label=label, run=seed))
    scores = pd.concat(frames, ignore_index=True)
    if checkpoints:
        scores = scores[scores["checkpoint"].isin(checkpoints)]
    if tasks:
        scores = scores[scores["task"].isin(tasks)]
    # The average is on 0-1 in the CSV like every task; shown as the README shows it, 0-100.
    scores.loc[scores["task"] == "average", "score"] *= 100
    stats = scores.groupby(["label", "checkpoint", "task"], sort=False)["score"].agg(
        ["mean", "std", "count"]).reset_index()
    order = list(dict.fromkeys(scores["task"]))
    lines = ["| run | checkpoint | seeds | " + " | ".join(t.removeprefix("world_") for t in order)
             + " |", "|---|---|---|" + "---|" * len(order)]
    for (label, checkpoint), group in stats.groupby(["label", "checkpoint"], sort=False):
        cells = group.set_index("task")
        values = []
        for task in order:
            if task not in cells.index:
                values.append("–")
                continue
            mean, std = cells.loc[task, "mean"], cells.loc[task, "std"]
            digits = 1 if task == "average" else 2
            values.append(f"{mean:.{digits}f} ± {0.0 if pd.isna(std) else std:.{digits}f}")
        lines.append(f"| {label} | {checkpoint} | {int(group['count'].max())} | "
                     + " | ".join(values) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("groups", nargs="+", metavar="LABEL=GLOB",
                        help="a label and the score CSVs of its seeds")
    parser.add_argument("--checkpoints", nargs="*", help="only these checkpoints")
    parser.add_argument("--tasks", nargs="*", help="only these tasks (e.g. world_caption)")
    args = parser.parse_args(argv)
    groups = {}
    for item in args.groups:
        label, _, pattern = item.partition("=")
        files = glob.glob(pattern)
        if not label or not files:
            parser.error(f"{item!r}: expected LABEL=GLOB matching at least one CSV")
        groups[label] = files
    print(seed_table(groups, args.checkpoints, args.tasks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
