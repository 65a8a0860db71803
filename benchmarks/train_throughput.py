"""Supervised tokens/s and held-out loss: our trainer against `transformers.Trainer` itself.

Same tiny VLM (same initial weights), same samples (the world's SFT conversations, all three
SFT stages mixed), same optimizer (AdamW, constant learning rate, no weight decay, gradient
clipping at 1.0), fp32, the same torch threads, one pass over the samples each:

- **ours**: the trainer's path. DeepSpeed engine (ZeRO-0, one gloo rank); best-fit packed rows
  with per-sample position ids; loss from the supervised positions' hidden states only; fused
  AdamW. (`Trainer` offers a fused AdamW too, `optim="adamw_torch_fused"`; its default,
  `adamw_torch`, is what the `Trainer` sides use.)
- **Trainer, flattening**: `transformers.Trainer` with `DataCollatorWithFlattening`. This is
  Hugging Face's padding-free path: a batch is one row of concatenated samples with packed
  `position_ids`.
- **Trainer, group_by_length**: `transformers.Trainer` with `DataCollatorForSeq2Seq` (pad to
  the longest) and `train_sampling_strategy="group_by_length"`.
- **padded loop**: a plain loop that does per step what a padding `Trainer` does. Kept as the
  floor the README compared against before.

Pass k of every side starts from the same weights (seed `--seed` + k) and trains on the same
samples for the same number of optimizer steps (ours takes as
many packed rows per step as that needs). Each pass runs in a fresh process, so no side
inherits another's threads, caches or process group (a process group left by DeepSpeed
would make `Trainer` wrap the model in DDP). The sides alternate, `--repeats` times. Each
side's figure is the median over its passes, with the min and max. The first `--warmup` optimizer
steps of a pass are not timed. After each pass the model's mean loss per supervised token on
`--heldout` samples outside the training set is computed, by one function for all sides. A
speed-up bought with a worse model then shows.

The last line prints ours against the best `transformers.Trainer` configuration.

    python benchmarks/train_throughput.py               # about 6 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import SFT_STAGES, markdown, world_sft  # noqa: E402

from sail_pipeline.modeling.presets import build_vlm, get_preset  # noqa: E402
from sail_pipeline.training.launcher import LauncherParams, rank_environment  # noqa: E402
from sail_pipeline.training.packing import IGNORE_INDEX, TokenBatches, TokenSample, collate  # noqa: E402
from sail_pipeline.training.train import SupervisedLM  # noqa: E402

LR = 5e-4
Pixels = Callable[[TokenSample], torch.Tensor]


class Pass:
    """What one training pass measured: a timestamp and supervised tokens per optimizer step."""

    def __init__(self, stamps: list[float] | None = None, supervised: list[int] | None = None,
                 heldout_loss: float = float("nan")) -> None:
        self.stamps: list[float] = stamps or []
        self.supervised: list[int] = supervised or []
        self.heldout_loss = heldout_loss

    def rate(self, warmup: int) -> float:
        """Supervised tokens/s over the steps after the warm-up ones."""
        seconds = self.stamps[-1] - self.stamps[warmup - 1]
        return sum(self.supervised[warmup:len(self.stamps)]) / seconds

    @property
    def steps(self) -> int:
        return len(self.stamps)


def _model(tokenizer, seed: int):
    model = build_vlm(get_preset("tiny"), tokenizer, seed=seed)
    model.set_attn_implementation("sdpa")
    return model.train()


@torch.no_grad()
def heldout_loss(model, samples: Sequence[TokenSample], pixels: Pixels, pad_id: int) -> float:
    """Mean cross-entropy per supervised token, padded batches: one yardstick for every side."""
    model.eval()
    scorer = SupervisedLM(model)
    total, count = 0.0, 0
    for start in range(0, len(samples), 32):
        picked = list(samples[start:start + 32])
        batch = collate([[s] for s in picked], pad_id, "token", packed=False)
        images = [pixels(s) for s in picked if s.image is not None]
        if images:
            batch["pixel_values"] = torch.cat(images)
        losses, _, _ = scorer.token_losses(**batch)
        total += float(losses.sum())
        count += losses.numel()
    return total / count


def ours(samples, pixels: Pixels, tokenizer, steps: int, max_seq_len: int, seed: int
         ) -> tuple[Pass, torch.nn.Module]:
    import deepspeed

    os.environ.update(rank_environment(LauncherParams()))
    deepspeed.init_distributed(dist_backend="gloo")
    # As many packed rows per step as it takes to cover the samples in `steps` steps.
    packed_rows = TokenBatches(samples, 1, 1, seed, packed=True,
                               max_seq_len=max_seq_len).rows_per_epoch
    rows = -(-packed_rows // steps)
    plan = TokenBatches(samples, rows, 1, seed, packed=True, max_seq_len=max_seq_len)
    model = _model(tokenizer, seed)
    network = SupervisedLM(model)
    optimizer = torch.optim.AdamW(network.parameters(), lr=LR, weight_decay=0.0,
                                  fused=True)  # as the trainer's
    engine, *_ = deepspeed.initialize(model=network, optimizer=optimizer, config={
        "train_micro_batch_size_per_gpu": rows, "gradient_accumulation_steps": 1,
        "gradient_clipping": 1.0, "zero_optimization": {"stage": 0},
        "steps_per_print": 10**9})
    measured = Pass()
    for k in range(-(-plan.rows_per_epoch // rows)):
        batch, stats = plan.batch(k, 0, tokenizer.pad_token_id, pixels)
        loss = engine(**batch)
        engine.backward(loss)
        engine.step()
        measured.supervised.append(stats.supervised_tokens)
        measured.stamps.append(time.perf_counter())
    return measured, model  # DeepSpeed trained these weights in place


class _ImageSamples(torch.utils.data.Dataset):
    """The samples as a `Trainer` dataset: token ids, unshifted labels, the image's tiles."""

    def __init__(self, samples: Sequence[TokenSample], pixels: Pixels) -> None:
        self.samples, self.pixels = samples, pixels

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        return {"input_ids": sample.input_ids, "labels": sample.labels,
                "pixel_values": self.pixels(sample) if sample.image is not None else None}


class _WithImages:
    """A Hugging Face collator for the text, plus the batch's image tiles in sample order
    (the order of the image tokens the VLM fills). Counts each batch's supervised tokens."""

    def __init__(self, text_collator, measured: Pass) -> None:
        self.text_collator, self.measured = text_collator, measured

    def __call__(self, features: list[dict]) -> dict:
        batch = self.text_collator([{"input_ids": f["input_ids"], "labels": f["labels"]}
                                    for f in features])
        images = [f["pixel_values"] for f in features if f["pixel_values"] is not None]
        if images:
            batch["pixel_values"] = torch.cat(images)
        self.measured.supervised.append(int((batch["labels"] != IGNORE_INDEX).sum()))
        return batch


def hf_trainer(samples, pixels: Pixels, tokenizer, batch_size: int, seed: int,
               flatten: bool) -> tuple[Pass, torch.nn.Module]:
    from transformers import (
        DataCollatorForSeq2Seq,
        DataCollatorWithFlattening,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    measured = Pass()

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            measured.stamps.append(time.perf_counter())

    text = (DataCollatorWithFlattening() if flatten else
            DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX))
    model = _model(tokenizer, seed)
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch, per_device_train_batch_size=batch_size, num_train_epochs=1,
            learning_rate=LR, lr_scheduler_type="constant", weight_decay=0.0,
            max_grad_norm=1.0, optim="adamw_torch", use_cpu=True, report_to="none",
            save_strategy="no", logging_strategy="no", disable_tqdm=True,
            dataloader_num_workers=0, remove_unused_columns=False, seed=seed, data_seed=seed,
            train_sampling_strategy="random" if flatten else "group_by_length")
        trainer = Trainer(model=model, args=args, train_dataset=_ImageSamples(samples, pixels),
                          data_collator=_WithImages(text, measured), callbacks=[Stamp()])
        trainer.train()
    return measured, model


def padded_loop(samples, pixels: Pixels, tokenizer, batch_size: int, seed: int
                ) -> tuple[Pass, torch.nn.Module]:
    model = _model(tokenizer, seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    order = np.random.default_rng(seed).permutation(len(samples))
    measured = Pass()
    for start in range(0, len(order), batch_size):
        picked = [samples[int(i)] for i in order[start:start + batch_size]]
        padded = collate([[s] for s in picked], tokenizer.pad_token_id, "token", packed=False)
        labels = torch.full_like(padded["input_ids"], IGNORE_INDEX)
        for row, sample in enumerate(picked):
            labels[row, :len(sample)] = torch.tensor(sample.labels)
        loss = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"],
                     pixel_values=torch.cat([pixels(s) for s in picked]), labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        measured.supervised.append(int((labels != IGNORE_INDEX).sum()))
        measured.stamps.append(time.perf_counter())
    return measured, model


SIDES = ("ours", "Trainer, flattening", "Trainer, group_by_length", "padded loop")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=400, help="scenes in the world")
    parser.add_argument("--samples", type=int, default=1024, help="SFT samples per pass")
    parser.add_argument("--heldout", type=int, default=256, help="held-out samples for the loss")
    parser.add_argument("--batch", type=int, default=32, help="samples per Trainer step")
    parser.add_argument("--max-seq-len", type=int, default=256, help="tokens per packed row")
    parser.add_argument("--repeats", type=int, default=3, help="passes per side")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per pass")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sides", nargs="+", default=list(SIDES), choices=SIDES)
    parser.add_argument("--one-pass", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--pass-seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_pass:
        one_pass(args)
    else:
        compare(args)


def one_pass(args: argparse.Namespace) -> None:
    """Train one side once, in this process; print what it measured as the last line."""
    data, processor = world_sft(args.n_train, args.seed, max_seq_len=args.max_seq_len)
    mixed = [s for name in SFT_STAGES for s in data[name].samples]
    order = np.random.default_rng(args.seed).permutation(len(mixed))
    if len(order) < args.samples + args.heldout:
        sys.exit(f"the world has {len(order)} SFT samples; --samples + --heldout is more")
    samples = [mixed[int(i)] for i in order[:args.samples]]
    heldout = [mixed[int(i)] for i in order[args.samples:args.samples + args.heldout]]
    pixels = data["knowledge"].pixels  # any stage's decoder: all share the processor
    tokenizer = processor.tokenizer
    side, seed = args.one_pass, args.pass_seed  # the world and the split stay `--seed`'s
    if side == "ours":
        measured, model = ours(samples, pixels, tokenizer, -(-len(samples) // args.batch),
                               args.max_seq_len, seed)
    elif side == "padded loop":
        measured, model = padded_loop(samples, pixels, tokenizer, args.batch, seed)
    else:
        measured, model = hf_trainer(samples, pixels, tokenizer, args.batch, seed,
                                     flatten=side == "Trainer, flattening")
    measured.heldout_loss = heldout_loss(model, heldout, pixels, tokenizer.pad_token_id)
    print(json.dumps({"stamps": measured.stamps, "supervised": measured.supervised,
                      "heldout_loss": measured.heldout_loss}))


def compare(args: argparse.Namespace) -> None:
    passed = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
              if k not in ("sides", "one_pass", "repeats", "pass_seed")]
    # No rank variables: only ours joins a process group, and it makes its own.
    env = {k: v for k, v in os.environ.items() if k not in (
        "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    print(f"{args.samples} samples, {args.heldout} held out, {args.batch} per Trainer step, "
          f"packed rows of {args.max_seq_len}; {torch.get_num_threads()} threads; "
          f"{args.repeats} passes per side, each in a fresh process", flush=True)
    passes: dict[str, list[Pass]] = {side: [] for side in args.sides}
    for repeat in range(args.repeats):
        for side in args.sides:
            done = subprocess.run([sys.executable, __file__, *passed, "--one-pass", side,
                                   f"--pass-seed={args.seed + repeat}"],
                                  env=env, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{side} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
            measured = Pass(**json.loads(done.stdout.strip().splitlines()[-1]))
            passes[side].append(measured)
            print(f"pass {repeat + 1} {side:25s}: {measured.steps} steps, "
                  f"{measured.rate(args.warmup):7.0f} supervised tokens/s, held-out loss "
                  f"{measured.heldout_loss:.4f}", flush=True)

    table, medians = [], {}
    for side, runs in passes.items():
        rates = [p.rate(args.warmup) for p in runs]
        medians[side] = statistics.median(rates)
        table.append({"side": side, "optimizer steps": runs[0].steps,
                      "supervised tokens/s (median)": round(medians[side]),
                      "min-max": f"{min(rates):.0f}-{max(rates):.0f}",
                      "held-out loss": statistics.median(p.heldout_loss for p in runs)})
    print(markdown(table))
    trainers = [s for s in medians if s.startswith("Trainer")]
    if "ours" in medians and trainers:
        best = max(trainers, key=medians.get)
        print(f"train throughput ratio, ours / best transformers.Trainer ({best}): "
              f"{medians['ours'] / medians[best]:.2f}x (medians of {args.repeats} passes)")


if __name__ == "__main__":
    main()
