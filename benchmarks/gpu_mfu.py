"""Tokens/s per GPU and MFU of a preset (default sail-vl-2b) on one GPU, the trainer's path.

Random weights of the preset's real shapes in bf16, flash-attention when installed, the
DeepSpeed engine (ZeRO-0, one rank), packed rows of `--seq-lens` tokens holding synthetic
image conversations (`--tiles` tiles of image tokens + `--text-tokens` supervised text each),
gradient checkpointing on. MFU = achieved model FLOPs/s (sail_pipeline.training.flops: 6N +
attention, frozen-module aware) / the GPU's dense bf16 peak.

    python benchmarks/gpu_mfu.py                                  # on a GPU
    python benchmarks/gpu_mfu.py --device cpu --preset tiny --seq-lens 256 --steps 2  # smoke

Prints one line per sequence length, the MFU figures last.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch


def _synthetic_samples(n: int, text_tokens: int, tiles: int, tokens_per_tile: int,
                       image_token: int, vocab: int, seed: int):
    from sail_pipeline.training.packing import IGNORE_INDEX, TokenSample

    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n):
        prompt = rng.integers(10, vocab - 1000, 16).tolist()
        reply = rng.integers(10, vocab - 1000, text_tokens).tolist()
        ids = [image_token] * (tiles * tokens_per_tile) + prompt + reply
        labels = [IGNORE_INDEX] * (len(ids) - len(reply)) + reply
        samples.append(TokenSample(ids, labels, image=b"synthetic", n_tiles=tiles))
    return samples


def measure(args: argparse.Namespace, seq_len: int) -> dict[str, float]:
    import deepspeed

    from sail_pipeline.modeling.presets import VLM_CLASSES, VocabStub, get_preset, vlm_config
    from sail_pipeline.modeling.tokenizer import IMG_CONTEXT
    from sail_pipeline.training.flops import peak_tflops, training_flops
    from sail_pipeline.training.packing import TokenBatches
    from sail_pipeline.training.train import SupervisedLM, choose_attention

    device = torch.device(args.device)
    preset = get_preset(args.preset)
    vocab = VocabStub(args.vocab_size)
    config = vlm_config(preset, vocab)  # type: ignore[arg-type]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = VLM_CLASSES[preset.family](config).to(dtype)
    attention = choose_attention("auto")
    model.set_attn_implementation(attention)
    if args.grad_ckpt:
        model.activation_checkpointing_enable({"use_reentrant": False})
    image_token = vocab.convert_tokens_to_ids(IMG_CONTEXT)
    samples = _synthetic_samples(64 * args.micro_batch, args.text_tokens, args.tiles,
                                 preset.tokens_per_tile, image_token, args.vocab_size, 0)
    plan = TokenBatches(samples, args.micro_batch, 1, 0, True, seq_len)
    network = SupervisedLM(model)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-5)
    engine, *_ = deepspeed.initialize(model=network, optimizer=optimizer, config={
        "train_micro_batch_size_per_gpu": args.micro_batch, "gradient_accumulation_steps": 1,
        "gradient_clipping": 1.0, "bf16": {"enabled": dtype == torch.bfloat16},
        "zero_optimization": {"stage": 0}, "steps_per_print": 10**9})
    size = preset.tile_size

    def pixels(sample) -> torch.Tensor:
        return torch.randn(sample.n_tiles, 3, size, size)

    def step(k: int) -> tuple[int, float]:
        batch, stats = plan.batch(k, 0, 0, pixels)
        batch = {key: v.to(device) for key, v in batch.items()}
        batch["pixel_values"] = batch["pixel_values"].to(dtype)
        loss = engine(**batch)
        engine.backward(loss)
        engine.step()
        flops = training_flops(config, stats.real_tokens, int(batch["input_ids"].shape[1]),
                               int(batch["pixel_values"].shape[0]))
        return stats.real_tokens, flops

    for k in range(args.warmup):
        step(k)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started, tokens, flops = time.perf_counter(), 0, 0.0
    for k in range(args.warmup, args.warmup + args.steps):
        t, f = step(k)
        tokens, flops = tokens + t, flops + f
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    peak = peak_tflops(name, args.peak_tflops)
    achieved = flops / seconds / 1e12
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    return {"seq_len": seq_len, "tokens_per_s": tokens / seconds, "tflops": achieved,
            "mfu": achieved / peak if peak else float("nan"), "attention": attention,
            "device": name or "cpu", "peak_memory_gib": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="sail-vl-2b")
    parser.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke run")
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--micro-batch", type=int, default=1, help="packed rows per step")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per length")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--tiles", type=int, default=5, help="tiles per image (4 + thumbnail)")
    parser.add_argument("--text-tokens", type=int, default=512, help="supervised per sample")
    parser.add_argument("--vocab-size", type=int, default=151_936, help="Qwen2.5's")
    parser.add_argument("--no-grad-ckpt", dest="grad_ckpt", action="store_false")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="device peak when its name is not in flops.PEAK_TFLOPS")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA GPU here: this figure needs one (use --device cpu for a smoke run)")

    from sail_pipeline.training.launcher import LauncherParams, rank_environment
    from sail_pipeline.training.rendezvous import init_process_group

    os.environ.update(rank_environment(LauncherParams()))
    # The trainer's own rendezvous: one rank, no TCP store, and no build of DeepSpeed's CPU
    # shared-memory op (30 s in a fresh environment, for a reduction one rank never does).
    init_process_group("nccl" if args.device == "cuda" else "gloo")
    results = []
    for seq_len in args.seq_lens:
        result = measure(args, seq_len)
        results.append(result)
        print(f"{args.preset} seq {seq_len}: {result['tokens_per_s']:.0f} tokens/s/GPU, "
              f"{result['tflops']:.1f} TFLOP/s, MFU {result['mfu']:.1%}, "
              f"peak memory {result['peak_memory_gib']:.1f} GiB, {result['attention']}, "
              f"{result['device']}", flush=True)
    print("MFU: " + ", ".join(f"seq {r['seq_len']} {r['mfu']:.1%}" for r in results))


if __name__ == "__main__":
    main()
