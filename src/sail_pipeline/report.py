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
    "knowledge": ("sft/knowledge_model.json", None, "one-word VQA"),
    "instruction": ("sft/instruction_model.json", None, "conversations"),
    "preference": ("sft/preference_model.json", None, "all questions of a scene"),
}
CHANCE = {"count": "1/3", "colour": "1/6", "shape": "1/3", "position": "1/3", "ocr": "1/8"}


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


def eval_table(metrics_path: Path) -> str:
    metrics = json.loads(metrics_path.read_text())
    tasks = [t for t in next(iter(metrics.values())) if t != "average"]
    lines = ["| checkpoint | " + " | ".join(f"{t} ({CHANCE.get(t, '?')})" for t in tasks)
             + " | average (0–100) |", "|---|" + "---|" * (len(tasks) + 1)]
    for checkpoint, scores in metrics.items():
        lines.append(f"| {checkpoint} | " + " | ".join(f"{scores[t]:.2f}" for t in tasks)
                     + f" | {scores['average']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="data", help="the project's data directory")
    args = parser.parse_args()
    data = Path(args.data)
    print(stage_table(data / "06_models"))
    print()
    print(eval_table(data / "08_reporting" / "evaluation_metrics.json"))


if __name__ == "__main__":
    main()
