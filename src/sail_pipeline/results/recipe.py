"""Results: the recipe, as `make run` (`kedro run`) leaves it."""

from __future__ import annotations

from pathlib import Path

from sail_pipeline.results.page import Sources, image, page
from sail_pipeline.schema import BACKBONES, RECIPE, get_stage

# The benchmark-format tasks' own metrics, beside their score.
DETAILS = {"caption": ("object_recall", "attribute_recall", "object_precision",
                       "attribute_precision"),
           "pope": ("accuracy", "yes_ratio"), "mme": ("acc", "acc_plus", "total"),
           "mmbench": ("accuracy",)}


def _trains(stage: str) -> str:
    spec = get_stage(stage)
    stand_in = {"lm": "all (stand-in LLM)", "vision": "all (stand-in ViT)"}
    return stand_in.get(spec.kind) or " + ".join(spec.trainable)


def stage_table(pointers: dict[str, dict]) -> str:
    """One row per trained stage (`pointers`: stage -> the `{stage}_model` pointer)."""
    lines = ["| stage | trains | data | rows | seconds | held-out loss before → after |",
             "|---|---|---|---|---|---|"]
    for stage, pointer in pointers.items():
        summary = pointer["summary"]
        if "train_samples" not in summary:  # a user's backbone, given by path
            continue
        lines.append(f"| {stage} | {_trains(stage)} | {get_stage(stage).data} | "
                     f"{summary['train_samples']} | {summary['wall_seconds']:.0f} | "
                     f"{summary['eval_loss_before']:.3f} → {summary['eval_loss_after']:.3f} |")
    return "\n".join(lines)


def eval_table(metrics: dict, report: dict) -> str:
    """Scores per checkpoint and task; each task's chance level in brackets (– for none)."""
    chance = next(iter(report.values()))["chance"]
    tasks = [t for t in next(iter(metrics.values())) if t != "average"]
    heads = [f"{t} ({chance[f'world_{t}']:.2f})" if f"world_{t}" in chance else f"{t} (–)"
             for t in tasks]
    lines = ["| checkpoint | " + " | ".join(heads) + " | average (0–100) |",
             "|---|" + "---|" * (len(tasks) + 1)]
    for checkpoint, scores in metrics.items():
        lines.append(f"| {checkpoint} | " + " | ".join(f"{scores[t]:.2f}" for t in tasks)
                     + f" | {scores['average']:.1f} |")
    return "\n".join(lines)


def details_table(report: dict) -> str:
    """The benchmark-format tasks' other metrics (yes-ratio, acc+, ...), per checkpoint."""
    columns = [(task, metric) for task, metrics in DETAILS.items() for metric in metrics
               if any(metric in r["details"].get(f"world_{task}", {}) for r in report.values())]
    if not columns:
        return ""
    lines = ["| checkpoint | " + " | ".join(f"{t} {m}" for t, m in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for checkpoint, r in report.items():
        values = [r["details"].get(f"world_{t}", {}).get(m) for t, m in columns]
        lines.append(f"| {checkpoint} | " + " | ".join(
            "–" if v is None else f"{v:.0f}" if m == "total" else f"{v:.2f}"
            for (_, m), v in zip(columns, values, strict=True)) + " |")
    return "\n".join(lines)


def tables(sources: Sources, namespace: str | None = None) -> str:
    """The stage table and, once evaluation ran, the scores and their details."""
    prefix = f"{namespace}." if namespace else ""
    names = {stage: f"{stage}_model" for stage in BACKBONES}
    names |= {stage: f"{prefix}{stage}_model" for stage in RECIPE}
    pointers = {stage: sources.load(name) for stage, name in names.items()
                if sources.exists(name)}
    parts = [stage_table(pointers)]
    if sources.exists(f"{prefix}evaluation_metrics"):
        metrics = sources.load(f"{prefix}evaluation_metrics")
        report = sources.load(f"{prefix}evaluation_report")
        parts += [eval_table(metrics, report), details_table(report)]
    return "\n\n".join(part for part in parts if part)


@page("recipe", "Results: the recipe (`make run`)", run_key="__default__")
def recipe_page(sources: Sources) -> tuple[str, list[Path]]:
    figures = [p for p in (sources.path("evaluation_chart"),) if p is not None and p.exists()]
    body = ["One seed of the whole chain on the embedded default. How the stages and the tasks "
            "are defined: [the recipe](../guides/recipe.md), "
            "[evaluation](../guides/evaluation.md).", "",
            "## Stages and scores", "",
            "Each training stage: what trains, on which data, how many rows, its wall time, "
            "and its held-out loss before and after. Each task's score is in [0, 1], with "
            "the score of guessing in brackets.", "", tables(sources), ""]
    body += [image(figure, "evaluation scores") for figure in figures]
    body += ["", "One seed: a change of arithmetic (another CPU, another library build) moves "
             "these averages by several points, so comparing recipes needs several seeds "
             "(the [scaling sweep](scaling.md) and the [selection experiments](selection.md))."]
    return "\n".join(body), figures
