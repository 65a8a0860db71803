"""Seconds from a training stage's process start to its first optimizer step, by phase.

Starts the trainer exactly as a training node does for one CPU rank (the same command and
rank environment), on a small SFT stage of the world, `--repeats` times. Each run stops after
`--steps` steps. The phases come from the trainer's own telemetry (`phases` in summary.json,
`training.telemetry.PhaseClock`), which the kernel's process start time anchors:

- imports: interpreter start, then torch, transformers and DeepSpeed;
- rendezvous: the one-process group;
- model: the model built from its preset (or loaded from the previous stage);
- data: the training and held-out tables read and encoded;
- engine: optimizer and `deepspeed.initialize`;
- tracking: the MLflow run opened (an sqlite store, as in `make run`).

The fixed overhead is the sum of these phases. The evaluation before training and the first
step's own compute are not in it. Medians over the repeats; the last line prints the total.

    python benchmarks/stage_startup.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pandas as pd  # noqa: E402
from _common import markdown  # noqa: E402

from sail_pipeline import recipe_data  # noqa: E402
from sail_pipeline.modeling.tokenizer import train_tokenizer  # noqa: E402
from sail_pipeline.schema import LauncherParams, RuntimeParams, TrainParams  # noqa: E402
from sail_pipeline.training.config import RunConfig, TrackingConfig  # noqa: E402
from sail_pipeline.training.launcher import build_command, rank_environment  # noqa: E402
from sail_pipeline.world import WorldParams, generate_world  # noqa: E402

FIXED = ("imports", "rendezvous", "model", "data", "engine", "tracking")


def stage_inputs(folder: Path, n_train: int) -> tuple[Path, Path]:
    """A training table of the world's conversations and its tokenizer, written to `folder`."""
    world = generate_world(WorldParams(n_train=n_train, n_benchmark=10, seed=0))
    images = world.scenes.set_index("id")["image"]
    conversations = world.conversations
    table = pd.DataFrame({"id": conversations["id"],
                          "image": [images[s] for s in conversations["scene_id"]],
                          "messages": conversations["messages"]})
    table.to_parquet(folder / "train.parquet")
    tokenizer = train_tokenizer(recipe_data.text_corpus(world.scenes, world.vqa,
                                                        world.conversations, world.probes), 1024)
    tokenizer.save_pretrained(folder / "tokenizer")
    return folder / "train.parquet", folder / "tokenizer"


def one_stage(folder: Path, name: str, table: Path, tokenizer: Path, steps: int) -> dict:
    cfg = RunConfig(
        kind="vlm", stage=name, output_dir=str(folder / name), train_data=str(table),
        eval_data=str(table), tokenizer_path=str(tokenizer),
        train=TrainParams(steps=steps, lr=1e-3, micro_batch_size=4, max_seq_len=256, log_every=1,
                          eval_samples=16),
        tracking=TrackingConfig(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",
                                run_name=name),
        runtime=RuntimeParams(seed=0))
    config_path = cfg.save(folder / name / "run_config.json")
    launcher = LauncherParams()
    env = dict(os.environ, PYTHONUNBUFFERED="1", **rank_environment(launcher))
    done = subprocess.run(build_command(config_path, launcher), env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        sys.exit(f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads((folder / name / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per stage")
    parser.add_argument("--n-train", type=int, default=200, help="scenes in the world")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        table, tokenizer = stage_inputs(folder, args.n_train)
        runs = [one_stage(folder, f"stage{k}", table, tokenizer, args.steps)
                for k in range(args.repeats + 1)][1:]  # the first warms the page cache
    phases = sorted({p for run in runs for p in run["phases"]},
                    key=lambda p: FIXED.index(p) if p in FIXED else len(FIXED))
    medians = {p: statistics.median(run["phases"].get(p, 0.0) for run in runs) for p in phases}
    rows = [{"phase": p, "median s": medians[p],
             "min-max": f"{min(r['phases'].get(p, 0.0) for r in runs):.2f}-"
                        f"{max(r['phases'].get(p, 0.0) for r in runs):.2f}",
             "fixed overhead": "yes" if p in FIXED else ""} for p in phases]
    print(markdown(rows))
    first = statistics.median(run["seconds_to_first_step"] for run in runs)
    fixed = sum(medians.get(p, 0.0) for p in FIXED)
    print(f"process start to the first optimizer step: {first:.2f}s (median of {args.repeats})")
    print(f"stage start-up fixed overhead: {fixed:.2f}s ("
          + ", ".join(f"{p} {medians.get(p, 0.0):.2f}" for p in FIXED) + ")")


if __name__ == "__main__":
    main()
