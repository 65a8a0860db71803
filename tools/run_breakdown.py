"""Where a `kedro run`'s minutes and memory went, from the run's own telemetry (`run_timing`).

    python tools/run_breakdown.py                       # the last run in data/
    python tools/run_breakdown.py --before old.json     # and the change per phase
    python tools/run_breakdown.py --figure docs/performance/make_run_breakdown.png

Prints the seconds per phase over the whole run (training stages split into import,
start-up, data, tracking, eval, train, save; `launch` is starting the trainer process and
reading its result; `other nodes` is every node that does not train), then the slowest
nodes with their peak resident memory (the Kedro process during the node, and the largest
trainer process it started). With `--figure`, draws the phases as horizontal bars (and the `--before` run beside).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sail_pipeline.glue.run_timing import breakdown

DEFAULT = Path("data/08_reporting/run_timing.json")


def _load(path: Path) -> dict:
    if not path.exists():
        sys.exit(f"{path} does not exist: run `kedro run` first (it writes the catalog's "
                 f"run_timing), or name a record")
    return json.loads(path.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("timing", nargs="?", type=Path, default=DEFAULT,
                        help=f"a run_timing record (default {DEFAULT})")
    parser.add_argument("--before", type=Path, help="an earlier record to compare with")
    parser.add_argument("--nodes", type=int, default=12, help="slowest nodes to list")
    parser.add_argument("--figure", type=Path, help="write a bar chart of the phases here")
    args = parser.parse_args(argv)

    record = _load(args.timing)
    nodes, phases = breakdown(record)
    before = breakdown(_load(args.before))[1] if args.before else None
    total = record["wall_seconds"]
    print(f"| phase | seconds | share |{' before |' if before else ''}")
    print(f"|---|---|---|{'---|' if before else ''}")
    for phase, seconds in phases.items():
        old = f" {before.get(phase, 0.0):.0f} |" if before else ""
        print(f"| {phase} | {seconds:.0f} | {seconds / total:.0%} |{old}")
    print(f"| **all** | **{total:.0f}** | |"
          + (f" {sum(before.values()):.0f} |" if before else ""))
    print()
    print("| node | seconds | training stages | seconds not training | peak MiB (kedro) "
          "| peak MiB (trainer) |")
    print("|---|---|---|---|---|---|")
    for row in nodes[:args.nodes]:
        print(f"| {row['node']} | {row['seconds']:.0f} | {row['stages']} | "
              f"{row['not training']:.0f} | {_mib(row['peak_rss_mb'])} | "
              f"{_mib(row['trainer_peak_rss_mb'])} |")
    peaks = record.get("peak_rss_mb")
    if peaks:
        print(f"peak resident memory: kedro process {_mib(peaks['kedro'])} MiB, largest "
              f"trainer process {_mib(peaks['trainer'])} MiB"
              + ("" if peaks.get("per_node", True) else
                 " (per-node peaks are the process's so far: this kernel cannot reset them)"))
    if args.figure:
        _figure(phases, before, args.figure)
        print(f"figure: {args.figure}")
    not_training = total - phases.get("train", 0.0)
    print(f"run: {total:.0f}s, of which {not_training:.0f}s not training steps")
    return 0


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _figure(phases: dict[str, float], before: dict[str, float] | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(phases)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(names) + 1.2))
    ys = range(len(names))
    height = 0.4 if before else 0.7
    ax.barh([y + (height / 2 if before else 0) for y in ys], [phases[n] for n in names],
            height=height, label="after" if before else None, color="tab:blue")
    if before:
        ax.barh([y - height / 2 for y in ys], [before.get(n, 0.0) for n in names],
                height=height, label="before", color="tab:gray")
        ax.legend()
    ax.set_yticks(list(ys), names)
    ax.set_xlabel("seconds of the run")
    ax.set_title("Where `make run`'s wall time goes (run_timing)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
