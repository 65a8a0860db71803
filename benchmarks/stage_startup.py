"""Seconds from a training stage's process start to its first optimizer step, by phase.

Starts the trainer exactly as a training node does for one CPU rank (`training.launcher.
launch`), on a small SFT stage of the world, `--repeats` times each way:

- cold (`runtime.launcher.single_process: direct`): a fresh Python process per stage;
- warm (`single_process: warm`, the default): a child forked from the warm trainer, which
  imported torch, transformers, DeepSpeed and MLflow once. Its own start-up, paid once per
  `kedro run`, is printed apart.

Each run stops after `--steps` steps. The phases come from the trainer's own telemetry (`phases` in summary.json,
`training.telemetry.PhaseClock`), which the kernel's process start time anchors:

- imports: interpreter start, then torch, transformers and DeepSpeed;
- rendezvous: the one-process group;
- model: the model built from its preset (or loaded from the previous stage);
- data: the training and held-out tables read and encoded;
- engine: optimizer and `deepspeed.initialize`;
- tracking: the MLflow run opened (an sqlite store, as in `make run`).

The fixed overhead is the sum of these phases. The evaluation before training and the first
step's own compute are not in it. Medians over the repeats; the last line prints cold against
warm.

    python benchmarks/stage_startup.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import markdown  # noqa: E402

from sail_pipeline import recipe_data  # noqa: E402
from sail_pipeline.modeling.tokenizer import train_tokenizer  # noqa: E402
from sail_pipeline.schema import LauncherParams, RuntimeParams, TrainParams  # noqa: E402
from sail_pipeline.training import warm  # noqa: E402
from sail_pipeline.training.config import RunConfig, TrackingConfig  # noqa: E402
from sail_pipeline.training.launcher import launch  # noqa: E402
from sail_pipeline.world import WorldParams, generate_world  # noqa: E402

FIXED = ("imports", "rendezvous", "model", "data", "engine", "tracking")


def stage_inputs(folder: Path, n_train: int) -> tuple[Path, Path]:
    """A training table of the world's conversations and its tokenizer, written to `folder`."""
    world = generate_world(WorldParams(n_train=n_train, n_benchmark=10, seed=0))
    recipe_data.conversation_table(world.scenes, world.conversations).to_parquet(
        folder / "train.parquet")
    tokenizer = train_tokenizer(recipe_data.text_corpus(world.scenes, world.vqa,
                                                        world.conversations, world.probes), 1024)
    tokenizer.save_pretrained(folder / "tokenizer")
    return folder / "train.parquet", folder / "tokenizer"


def one_stage(folder: Path, name: str, table: Path, tokenizer: Path, steps: int,
              mode: str) -> dict:
    cfg = RunConfig(
        kind="vlm", stage=name, output_dir=str(folder / name), train_data=str(table),
        eval_data=str(table), tokenizer_path=str(tokenizer),
        train=TrainParams(steps=steps, lr=1e-3, micro_batch_size=4, max_seq_len=256, log_every=1,
                          eval_samples=16),
        tracking=TrackingConfig(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",
                                run_name=name),
        runtime=RuntimeParams(seed=0))
    return launch(cfg, LauncherParams(single_process=mode))


def table(runs: list[dict]) -> dict[str, float]:
    """Print the phases' medians and spread; return the medians."""
    phases = sorted({p for run in runs for p in run["phases"]},
                    key=lambda p: FIXED.index(p) if p in FIXED else len(FIXED))
    medians = {p: statistics.median(run["phases"].get(p, 0.0) for run in runs) for p in phases}
    print(markdown([{"phase": p, "median s": medians[p],
                     "min-max": f"{min(r['phases'].get(p, 0.0) for r in runs):.2f}-"
                                f"{max(r['phases'].get(p, 0.0) for r in runs):.2f}",
                     "fixed overhead": "yes" if p in FIXED else ""} for p in phases]))
    first = statistics.median(run["seconds_to_first_step"] for run in runs)
    fixed = sum(medians.get(p, 0.0) for p in FIXED)
    print(f"fixed overhead {fixed:.2f}s; process start to the first optimizer step "
          f"{first:.2f}s\n", flush=True)
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per stage")
    parser.add_argument("--n-train", type=int, default=200, help="scenes in the world")
    args = parser.parse_args()
    fixed = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        table_path, tokenizer = stage_inputs(folder, args.n_train)
        one_stage(folder, "page-cache", table_path, tokenizer, args.steps, "direct")
        started = time.perf_counter()
        warm.warm_trainer(dict(os.environ))
        ready = time.perf_counter() - started
        for mode in ("direct", "warm"):
            runs = [one_stage(folder, f"{mode}{k}", table_path, tokenizer, args.steps, mode)
                    for k in range(args.repeats)]
            print(f"{'cold (direct)' if mode == 'direct' else 'warm'}, median of "
                  f"{args.repeats} stages:")
            medians = table(runs)
            fixed[mode] = sum(medians.get(p, 0.0) for p in FIXED)
    print(f"the warm trainer's own start (once per kedro run): {ready:.2f}s")
    print(f"stage start-up fixed overhead: cold {fixed['direct']:.2f}s, warm "
          f"{fixed['warm']:.2f}s ({fixed['direct'] / fixed['warm']:.1f}x less)")


if __name__ == "__main__":
    main()
