"""Where a training step of our trainer spends its time, on the benchmark's data (CPU).

Times each part of a step (build the batch, forward, backward, optimizer step) over
`--steps` steps, then runs torch's profiler over a few more and prints its top operators by
self CPU time. The parts' shares come last.

    python benchmarks/profile_train_step.py             # the trainer's fused AdamW
    python benchmarks/profile_train_step.py --unfused   # AdamW's per-tensor loop
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import SFT_STAGES, world_sft  # noqa: E402
from train_throughput import LR, _model  # noqa: E402

from sail_pipeline.training.launcher import LauncherParams, rank_environment  # noqa: E402
from sail_pipeline.training.packing import TokenBatches  # noqa: E402
from sail_pipeline.training.train import SupervisedLM  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=400)
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--rows", type=int, default=8, help="packed rows per step")
    parser.add_argument("--max-seq-len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument("--profiled", type=int, default=5, help="steps under the profiler")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--unfused", action="store_true",
                        help="AdamW's per-tensor loop instead of the trainer's fused kernel")
    args = parser.parse_args()

    os.environ.update(rank_environment(LauncherParams()))
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo")
    data, processor = world_sft(args.n_train, 0, max_seq_len=args.max_seq_len)
    mixed = [s for name in SFT_STAGES for s in data[name].samples]
    picked = np.random.default_rng(0).permutation(len(mixed))[:args.samples]
    samples = [mixed[int(i)] for i in picked]
    tokenizer, pixels = processor.tokenizer, data["knowledge"].pixels
    plan = TokenBatches(samples, args.rows, 1, 0, packed=True, max_seq_len=args.max_seq_len)
    network = SupervisedLM(_model(tokenizer, 0))
    optimizer = torch.optim.AdamW(network.parameters(), lr=LR, weight_decay=0.0,
                                  fused=not args.unfused)  # the trainer's is fused
    engine, *_ = deepspeed.initialize(model=network, optimizer=optimizer, config={
        "train_micro_batch_size_per_gpu": args.rows, "gradient_accumulation_steps": 1,
        "gradient_clipping": 1.0, "zero_optimization": {"stage": 0},
        "steps_per_print": 10**9})
    parts: dict[str, float] = defaultdict(float)

    def step(k: int) -> None:
        t0 = time.perf_counter()
        batch, _ = plan.batch(k % (plan.rows_per_epoch // args.rows), 0,
                              tokenizer.pad_token_id, pixels)
        t1 = time.perf_counter()
        loss = engine(**batch)
        t2 = time.perf_counter()
        engine.backward(loss)
        t3 = time.perf_counter()
        engine.step()
        t4 = time.perf_counter()
        for name, seconds in (("batch", t1 - t0), ("forward", t2 - t1), ("backward", t3 - t2),
                              ("optimizer step", t4 - t3)):
            parts[name] += seconds
        float(loss)

    for k in range(3):
        step(k)
    parts.clear()
    for k in range(args.steps):
        step(k)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for k in range(args.profiled):
            step(k)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))
    total = sum(parts.values())
    print(f"{args.steps} steps of {args.rows} packed rows, {'unfused' if args.unfused else 'fused'}"
          f" AdamW: {total / args.steps * 1000:.0f} ms a step; "
          + ", ".join(f"{k} {v / total:.0%}" for k, v in parts.items()))


if __name__ == "__main__":
    main()
