"""Samples/s of batched greedy generation vs one-by-one on the world's suite, same answers.

Runs the evaluation's generator (`sail_pipeline.modeling.inference.VLMGenerator`, what the
lmms-eval `sail_vl` backend calls) over the world benchmark's questions twice: in batches of
`--batch-size` (left-padded) and one at a time. Both are greedy, so the answers must agree;
the script prints how many do, then the speed-up last.

    python benchmarks/eval_throughput.py                       # after `make run`
    python benchmarks/eval_throughput.py --checkpoint <hf dir> --samples 300
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import pandas as pd
from PIL import Image

DEFAULT_CHECKPOINT = "data/06_models/preference/hf"
DEFAULT_BENCHMARK = "data/05_model_input/benchmark.parquet"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="a trained hf/ dir")
    parser.add_argument("--benchmark", default=DEFAULT_BENCHMARK, help="the world's benchmark")
    parser.add_argument("--samples", type=int, default=256, help="questions to answer")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    args = parser.parse_args()
    for path, what in ((args.checkpoint, "checkpoint"), (args.benchmark, "benchmark")):
        if not Path(path).exists():
            sys.exit(f"{what} {path} not found: run `make run` first, or pass --{what}")

    from sail_pipeline.modeling.inference import load_generator

    table = pd.read_parquet(args.benchmark).head(args.samples)
    images = [Image.open(io.BytesIO(raw)).convert("RGB") for raw in table["image"]]
    prompts = table["question"].astype(str).tolist()
    timings, answers = {}, {}
    for batch_size in (args.batch_size, 1):
        generator = load_generator(args.checkpoint, batch_size=batch_size)
        generator.generate(images[:2], prompts[:2], args.max_new_tokens)  # warm-up
        started = time.perf_counter()
        answers[batch_size] = generator.generate(images, prompts, args.max_new_tokens)
        timings[batch_size] = time.perf_counter() - started
        print(f"batch size {batch_size:3d}: {len(prompts) / timings[batch_size]:7.1f} samples/s",
              flush=True)
    same = sum(a == b for a, b in zip(answers[args.batch_size], answers[1], strict=True))
    print(f"same answers: {same}/{len(prompts)}")
    print(f"eval throughput ratio (batch {args.batch_size} / batch 1): "
          f"{timings[1] / timings[args.batch_size]:.2f}x")


if __name__ == "__main__":
    main()
