"""Print the README's result tables from a finished run: `python -m sail_pipeline.report`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sail_pipeline.modeling.stages import STAGES

POINTERS = {
    "llm": ("pretrain/llm_backbone.json", "all (stand-in LLM)", "world text"),
    "vision": ("pretrain/vision_backbone.json", "all (stand-in ViT)", "attribute labels"),
    "alignment": ("pretrain/alignment_model.json", None, "captions"),
    "advance": ("pretrain/advance_model.json", None, "captions (+ OCR if data.advance_ocr)"),
    "knowledge": ("sft/knowledge_model.json", None, "one-word VQA + POPE/MME/MMBench probes"),
    "instruction": ("sft/instruction_model.json", None, "conversations"),
    "preference": ("sft/preference_model.json", None,
                   "all questions of a scene; one probe per scene replayed"),
}
# The benchmark-format tasks' own metrics, beside their score.
DETAILS = {"caption": ("object_recall", "attribute_recall", "object_precision",
                       "attribute_precision"),
           "pope": ("accuracy", "yes_ratio"), "mme": ("acc", "acc_plus", "total"),
           "mmbench": ("accuracy",)}


def stage_table(models: Path) -> str:
    lines = ["| stage | trains | data | rows | seconds | held-out loss before → after |",
             "|---|---|---|---|---|---|"]
    for stage, (pointer, trains, data) in POINTERS.items():
        path = models / pointer
        if not path.exists():
            continue
        summary = json.loads(path.read_text())["summary"]
        trains = trains or " + ".join(STAGES[stage].trainable)
        lines.append(f"| {stage} | {trains} | {data} | {summary['train_samples']} | "
                     f"{summary['wall_seconds']:.0f} | {summary['eval_loss_before']:.3f} → "
                     f"{summary['eval_loss_after']:.3f} |")
    return "\n".join(lines)


def eval_table(metrics_path: Path, report_path: Path) -> str:
    """Scores per checkpoint and task; each task's chance level in brackets (– for none)."""
    metrics = json.loads(metrics_path.read_text())
    chance = next(iter(json.loads(report_path.read_text()).values()))["chance"]
    tasks = [t for t in next(iter(metrics.values())) if t != "average"]
    heads = [f"{t} ({chance[f'world_{t}']:.2f})" if f"world_{t}" in chance else f"{t} (–)"
             for t in tasks]
    lines = ["| checkpoint | " + " | ".join(heads) + " | average (0–100) |",
             "|---|" + "---|" * (len(tasks) + 1)]
    for checkpoint, scores in metrics.items():
        lines.append(f"| {checkpoint} | " + " | ".join(f"{scores[t]:.2f}" for t in tasks)
                     + f" | {scores['average']:.1f} |")
    return "\n".join(lines)


def details_table(report_path: Path) -> str:
    """The benchmark-format tasks' other metrics (yes-ratio, acc+, ...), per checkpoint."""
    report = json.loads(report_path.read_text())
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="data", help="the project's data directory")
    args = parser.parse_args()
    data = Path(args.data)
    print(stage_table(data / "06_models"))
    print()
    reporting = data / "08_reporting"
    print(eval_table(reporting / "evaluation_metrics.json", reporting / "evaluation_report.json"))
    details = details_table(reporting / "evaluation_report.json")
    if details:
        print()
        print(details)


if __name__ == "__main__":
    main()
