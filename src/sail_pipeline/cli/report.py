"""Print the README's result tables from a finished run: `sail-report`.

Paths come from the project's catalog, so `--env micro` reads what `make micro` wrote.
"""

from __future__ import annotations

import argparse

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


def tables(catalog, namespace: str | None = None) -> str:
    """The README's tables of a finished run, read through the project's catalog."""
    prefix = f"{namespace}." if namespace else ""
    names = {stage: f"{stage}_model" for stage in BACKBONES}
    names |= {stage: f"{prefix}{stage}_model" for stage in RECIPE}
    pointers = {stage: catalog.load(name) for stage, name in names.items()
                if catalog.exists(name)}
    parts = [stage_table(pointers)]
    if catalog.exists(f"{prefix}evaluation_metrics"):
        metrics = catalog.load(f"{prefix}evaluation_metrics")
        report = catalog.load(f"{prefix}evaluation_report")
        parts += [eval_table(metrics, report), details_table(report)]
    return "\n\n".join(part for part in parts if part)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env", default=None, help="the Kedro environment of the run "
                        "(default: local, i.e. `kedro run`; `micro` for `make micro`)")
    parser.add_argument("--namespace", default=None,
                        help="a variant's (or sweep point's) tables instead of the recipe's")
    args = parser.parse_args()
    from sail_pipeline.glue.project_catalog import project_catalog

    print(tables(project_catalog(args.env), args.namespace))


if __name__ == "__main__":
    main()
