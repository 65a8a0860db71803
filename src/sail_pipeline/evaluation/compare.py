"""Several checkpoints on one suite: one table and one bar chart comparing them."""

from __future__ import annotations

import pandas as pd

from sail_pipeline.evaluation.runner import EvalReport

SCORE_COLUMNS = ["checkpoint", "task", "score", "chance", "n_samples"]


def score_table(reports: dict[str, EvalReport]) -> pd.DataFrame:
    rows = []
    for checkpoint, report in reports.items():
        for task, score in report.scores.items():
            rows.append({"checkpoint": checkpoint, "task": task, "score": score,
                         "chance": report.chance.get(task, float("nan")),
                         "n_samples": report.n_samples[task]})
        # A suite's average has a chance level only if every task has one (the real suite and
        # the free-text caption task do not): NaN, and no line drawn.
        chance = (sum(report.chance.values()) / len(report.chance)
                  if report.chance and set(report.chance) == set(report.scores)
                  else float("nan"))
        rows.append({"checkpoint": checkpoint, "task": "average", "score": report.average / 100,
                     "chance": chance,
                     "n_samples": sum(report.n_samples.values())})
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def score_chart(scores: pd.DataFrame):
    """Grouped bars: score per task for each checkpoint, with chance marked per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(scores["task"]))
    checkpoints = list(dict.fromkeys(scores["checkpoint"]))
    width = 0.8 / max(len(checkpoints), 1)
    figure, axis = plt.subplots(figsize=(1.6 * len(tasks) + 2, 4))
    for i, checkpoint in enumerate(checkpoints):
        part = scores[scores["checkpoint"] == checkpoint].set_index("task")
        axis.bar([t + i * width for t in range(len(tasks))],
                 [100 * part.loc[task, "score"] for task in tasks], width, label=checkpoint)
    chance = scores.drop_duplicates("task").set_index("task")["chance"]
    for t, task in enumerate(tasks):
        if pd.isna(chance[task]):
            continue
        axis.hlines(100 * chance[task], t - width / 2, t + 0.8 - width / 2, colors="black",
                    linestyles="dashed", label="chance" if t == 0 else None)
    axis.set_xticks([t + 0.4 - width / 2 for t in range(len(tasks))])
    axis.set_xticklabels([t.removeprefix("world_") for t in tasks])
    axis.set_ylabel("score (0-100)")
    axis.set_ylim(0, 105)
    axis.set_title("Benchmark scores by checkpoint")
    axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    return figure
