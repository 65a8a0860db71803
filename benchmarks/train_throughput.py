"""Supervised tokens/s: our trainer vs a padded Hugging Face `Trainer`-style loop, one process.

Same tiny VLM (same initial weights), same samples (the world's SFT conversations, all three
SFT stages mixed), same optimizer and learning rate, on this machine's CPU cores:

- ours: the trainer's path — DeepSpeed engine (ZeRO-0, one gloo rank), best-fit packed rows
  with per-sample position ids, loss from the supervised positions' hidden states only;
- baseline: what `transformers.Trainer` with a padding collator does per step — batches
  padded to their longest sample, `model(**batch, labels=...)` (full-vocabulary logits at
  every position), backward, gradient clipping, AdamW step.

Each side trains on the same samples for one pass; the two alternate `--repeats` times and
the best pass of each counts. Prints the ratio last.

    python benchmarks/train_throughput.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import SFT_STAGES, world_sft  # noqa: E402

from sail_pipeline.modeling.presets import build_vlm, get_preset  # noqa: E402
from sail_pipeline.training.launcher import LauncherParams, rank_environment  # noqa: E402
from sail_pipeline.training.packing import TokenBatches, collate  # noqa: E402
from sail_pipeline.training.train import SupervisedLM  # noqa: E402

LR = 5e-4


def _model(tokenizer, seed: int):
    model = build_vlm(get_preset("tiny"), tokenizer, seed=seed)
    model.set_attn_implementation("sdpa")
    return model.train()


def ours(samples, data, tokenizer, rows: int, max_seq_len: int, seed: int) -> tuple[float, int]:
    import deepspeed

    plan = TokenBatches(samples, rows, 1, seed, packed=True, max_seq_len=max_seq_len)
    network = SupervisedLM(_model(tokenizer, seed))
    optimizer = torch.optim.AdamW(network.parameters(), lr=LR)
    engine, *_ = deepspeed.initialize(model=network, optimizer=optimizer, config={
        "train_micro_batch_size_per_gpu": rows, "gradient_accumulation_steps": 1,
        "gradient_clipping": 1.0, "zero_optimization": {"stage": 0},
        "steps_per_print": 10**9})
    n_batches = plan.rows_per_epoch // rows

    def step(k: int) -> int:
        batch, stats = plan.batch(k, 0, tokenizer.pad_token_id, data.pixels)
        loss = engine(**batch)
        engine.backward(loss)
        engine.step()
        return stats.supervised_tokens

    for k in range(2):  # warm-up
        step(k)
    started, supervised = time.perf_counter(), 0
    for k in range(n_batches):
        supervised += step(k)
    return time.perf_counter() - started, supervised


def baseline(samples, data, tokenizer, batch_size: int, seed: int) -> tuple[float, int]:
    model = _model(tokenizer, seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    order = np.random.default_rng(seed).permutation(len(samples))
    batches = [order[i:i + batch_size] for i in range(0, len(order) - batch_size + 1,
                                                      batch_size)]

    def step(indices) -> int:
        picked = [samples[int(i)] for i in indices]
        padded = collate([[s] for s in picked], tokenizer.pad_token_id, "token", packed=False)
        labels = torch.full_like(padded["input_ids"], -100)
        for row, sample in enumerate(picked):
            labels[row, :len(sample)] = torch.tensor(sample.labels)
        pixel_values = torch.cat([data.pixels(s) for s in picked])
        loss = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"],
                     pixel_values=pixel_values, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return int((labels[:, 1:] != -100).sum())

    for indices in batches[:2]:  # warm-up
        step(indices)
    started, supervised = time.perf_counter(), 0
    for indices in batches:
        supervised += step(indices)
    return time.perf_counter() - started, supervised


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=400, help="scenes in the world")
    parser.add_argument("--samples", type=int, default=1536, help="SFT samples per pass")
    parser.add_argument("--batch", type=int, default=32, help="baseline samples per step")
    parser.add_argument("--max-seq-len", type=int, default=256, help="tokens per packed row")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    os.environ.update(rank_environment(LauncherParams()))
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo")
    data, processor = world_sft(args.n_train, args.seed, max_seq_len=args.max_seq_len)
    mixed = [s for name in SFT_STAGES for s in data[name].samples]
    picked = np.random.default_rng(args.seed).permutation(len(mixed))[:args.samples]
    samples = [mixed[int(i)] for i in picked]
    # Equal work per step: as many packed rows as the baseline's batch holds tokens.
    mean_len = sum(len(s) for s in samples) / len(samples)
    rows = max(1, round(args.batch * mean_len / args.max_seq_len))
    images = data["knowledge"]  # any stage's decoder: all share the processor
    tokenizer = processor.tokenizer
    print(f"{len(samples)} samples, mean {mean_len:.1f} tokens; baseline batches of "
          f"{args.batch} samples, ours {rows} packed rows of {args.max_seq_len}; "
          f"{torch.get_num_threads()} threads", flush=True)

    best = {"ours": float("inf"), "baseline": float("inf")}
    supervised = {}
    for repeat in range(args.repeats):
        for name in ("ours", "baseline"):
            if name == "ours":
                seconds, tokens = ours(samples, images, tokenizer, rows, args.max_seq_len,
                                       args.seed)
            else:
                seconds, tokens = baseline(samples, images, tokenizer, args.batch, args.seed)
            best[name] = min(best[name], seconds)
            supervised[name] = tokens
            print(f"pass {repeat + 1} {name:8s}: {seconds:6.2f}s, {tokens} supervised tokens, "
                  f"{tokens / seconds:8.0f} supervised tokens/s", flush=True)
    rate = {k: supervised[k] / best[k] for k in best}
    print(f"ours {rate['ours']:.0f} vs padded HF-style {rate['baseline']:.0f} supervised "
          f"tokens/s")
    print(f"train throughput ratio (ours / padded HF Trainer-style): "
          f"{rate['ours'] / rate['baseline']:.2f}x")


if __name__ == "__main__":
    main()
