"""Tasks at chance, each task's seed noise, and the average the verdicts use.

The benchmark average after the SFT (`sft/average`) is the mean of every task, in percent.
Tasks the stand-in answers at chance add noise to it and nothing else: POPE's F1 flips
between 0 and 0.7 from seed to seed. So the experiments judge their claims on
`<label>/verdict_average`: the mean of the tasks shown above chance, on the 0–1 scale of the
tasks (and of the equivalence margins). A task is above chance when a one-sided t-test over
seeds shows its score, averaged over the sizes, above the score of guessing
(`evaluation.tasks.chance_levels`). The same tasks make the average of every variant, so
variants are compared like with like. No Kedro here.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from sail_pipeline.experiments.stats import seed_interval

VERDICT_AVERAGE = "verdict_average"


def levels_of(benchmark: str | Path) -> dict[str, float]:
    """The chance level of every task of the benchmark (`evaluation.tasks.chance_levels`, keyed
    `world_<type>`; tasks where guessing means nothing are absent)."""
    from sail_pipeline.evaluation.tasks import chance_levels

    frame = pd.read_parquet(benchmark, columns=["question_type", "answer", "choices",
                                                "group_id"])
    return chance_levels(frame, sorted(frame["question_type"].astype(str).unique()))


def task_columns(points: pd.DataFrame, label: str) -> list[str]:
    """The `<label>/<task>` columns of the points, the averages left out."""
    return [c for c in points.columns if c.startswith(f"{label}/")
            and not c.endswith(("/average", f"/{VERDICT_AVERAGE}"))]


def task_table(points: pd.DataFrame, chance: dict[str, float], label: str,
               alpha: float = 0.05) -> pd.DataFrame:
    """Per task of `points` (one variant, or the variants that decide): its mean, its seed sd
    (the sd over seeds at each N, averaged over N), its chance level, the gain over chance
    with its one-sided (1 - alpha) lower bound over seeds, and `above_chance`. A task without
    a chance level (free text, e.g. captions) counts as above chance."""
    rows = []
    for column in task_columns(points, label):
        task = column.split("/", 1)[1]
        part = points[points[column].notna()]
        level = chance.get(task, chance.get(f"world_{task}"))
        seed_sd = part.groupby("n")[column].std(ddof=1).mean()
        per_seed = part.groupby("seed")[column].mean().to_numpy(dtype=float)
        gain = seed_interval(per_seed - (level or 0.0), 1 - 2 * alpha)
        above = True if level is None else bool(gain.lo > 0)
        rows.append({"task": task, "mean": float(part[column].mean()),
                     "seed_sd": float(seed_sd) if pd.notna(seed_sd) else math.nan,
                     "chance": math.nan if level is None else float(level),
                     "gain_over_chance": gain.mean if level is not None else math.nan,
                     "gain_lo": gain.lo if level is not None else math.nan,
                     "seeds": gain.seeds, "above_chance": above})
    return pd.DataFrame(rows, columns=["task", "mean", "seed_sd", "chance", "gain_over_chance",
                                       "gain_lo", "seeds", "above_chance"])


def with_verdict_average(points: pd.DataFrame, tasks: list[str], label: str) -> pd.DataFrame:
    """The points with `<label>/verdict_average`: the mean of `tasks` (0–1), NaN without any."""
    column = f"{label}/{VERDICT_AVERAGE}"
    columns = [f"{label}/{task}" for task in tasks]
    values = points[columns].mean(axis=1) if columns else pd.Series(np.nan, index=points.index)
    return points.assign(**{column: values})


def section(table: pd.DataFrame, points: pd.DataFrame, label: str, decided_on: str) -> str:
    """The report's markdown on the tasks: each one's noise and chance, and the seed sd of the
    average before (every task) and after (the tasks above chance)."""
    if table.empty:
        return ""
    verdict = f"{label}/{VERDICT_AVERAGE}"
    lines = ["", f"## Tasks after the SFT: noise and chance ({decided_on})", "",
             f"`{verdict}`, which the claims on the SFT use, is the mean of the tasks shown "
             "above chance (a one-sided t-test over seeds of the score, averaged over N, "
             "against the score of guessing); the others add noise and nothing else.", "",
             "| task | mean | seed sd | chance | gain over chance [one-sided bound] | "
             "in the verdict average |", "|---|---|---|---|---|---|"]
    for row in table.itertuples():
        gain = "n/a (free text)" if pd.isna(row.chance) else \
            f"{row.gain_over_chance:+.3f} [{row.gain_lo:+.3f}]"
        chance = "n/a" if pd.isna(row.chance) else f"{row.chance:.3f}"
        lines.append(f"| {row.task} | {row.mean:.3f} | {row.seed_sd:.3f} | {chance} | {gain} | "
                     f"{'yes' if row.above_chance else 'no: at chance'} |")
    before = points.groupby(["variant", "n"])[f"{label}/average"].std(ddof=1).mean() / 100
    after = points.groupby(["variant", "n"])[verdict].std(ddof=1).mean() \
        if verdict in points else math.nan
    lines += ["", f"Seed sd of the average (mean over variants and N, 0–1 scale): every task "
              f"{before:.4f}; the tasks above chance {after:.4f}."]
    return "\n".join(lines) + "\n"
