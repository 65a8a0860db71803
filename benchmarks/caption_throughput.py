"""Captions/s of batched, length-grouped recaptioning vs one-by-one, same (greedy) captions.

Recaptions the world's images twice through `sail_pipeline.captioning.recaptioning` with the
local backend (shards written to a temporary directory, as a real run does): one by one
(batch size 1, no grouping), then in batches of `--batch-size` sorted by prompt length within
windows of `--window` batches. The prompts carry each image's alt-text, so their lengths vary
as in the real pool. Both runs are greedy, so every id must get the same caption; the script
prints how many do, each side's captions/s, and the speed-up last.

    python benchmarks/caption_throughput.py                 # tiny random-weight captioner
    python benchmarks/caption_throughput.py --model data/06_models/advance/hf
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from sail_pipeline import recipe_data
from sail_pipeline.captioning import LocalBackend, recaption
from sail_pipeline.captioning.shards import read_shards
from sail_pipeline.modeling.inference import VLMGenerator, load_generator
from sail_pipeline.modeling.presets import build_vlm, get_preset
from sail_pipeline.modeling.processor import VLProcessor
from sail_pipeline.modeling.tokenizer import train_tokenizer
from sail_pipeline.schema import RecaptionParams
from sail_pipeline.world import WorldParams, generate_world


def tiny_captioner(world, seed: int) -> VLMGenerator:
    """The tiny preset with random weights, drawn large enough to say something.

    At the default (small) init scale the tied embeddings make the model repeat the prompt's
    last token ("\\n"), so every caption would be "" and "same captions" would prove nothing;
    with weights ~N(0, 0.1) each caption depends on its image and prompt.
    """
    tables = [world.scenes, world.vqa, world.conversations, world.probes]
    tokenizer = train_tokenizer(recipe_data.text_corpus(*tables), 512)
    preset = get_preset("tiny")
    model = build_vlm(preset, tokenizer, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return VLMGenerator(model, VLProcessor(tokenizer, preset.image_settings()))


def outcomes(out_dir: str) -> dict[str, str]:
    """Each id's caption, or its failure reason (a random model may say nothing at all)."""
    view = read_shards(out_dir)
    return (dict(zip(view.captions["id"], view.captions["caption"], strict=True))
            | {i: f"FAILED {e}" for i, e in zip(view.failures["id"], view.failures["error"],
                                                strict=True)})


def timed_run(manifest: pd.DataFrame, generator: VLMGenerator, settings: RecaptionParams,
              label: str) -> tuple[float, dict[str, str]]:
    # The generator splits what it is handed into its own batches: let it take ours whole.
    generator.batch_size = settings.batch_size
    with tempfile.TemporaryDirectory(prefix="caption-throughput-") as out_dir:
        started = time.perf_counter()
        summary = recaption(manifest, LocalBackend(generator, settings.max_new_tokens), out_dir,
                            settings, progress=sys.stderr.isatty())
        seconds = time.perf_counter() - started
        result = outcomes(out_dir)
    rate = len(manifest) / seconds
    failed = f", {summary.failed} failed {summary.failed_by_reason}" if summary.failed else ""
    print(f"{label:30s}: {rate:7.2f} captions/s ({seconds:.1f}s, {summary.captioned} "
          f"captioned{failed})", flush=True)
    return rate, result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="The last line is the ratio, e.g. 'batched (32, length-grouped) vs one-by-one: "
               "5.1x captions/s, same captions 256/256'.")
    parser.add_argument("--n", type=int, default=256, help="world images to caption")
    parser.add_argument("--model", type=Path, default=None,
                        help="a trained checkpoint's hf/ dir (default: a tiny random-weight "
                             "captioner built here)")
    parser.add_argument("--batch-size", type=int, default=32, help="the batched run's batch")
    parser.add_argument("--window", type=int, default=8,
                        help="length-group window, in batches (RecaptionParams."
                             "length_group_window)")
    parser.add_argument("--max-new-tokens", type=int, default=12,
                        help="caption length cap; the one-by-one run's time grows with it")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0, help="world and random-weight seed")
    args = parser.parse_args()
    if args.model is not None and not args.model.is_dir():
        sys.exit(f"--model {args.model} is not a directory (want a checkpoint's hf/ dir)")

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    world = generate_world(WorldParams(n_train=args.n, n_benchmark=0, seed=args.seed))
    generator = (load_generator(args.model) if args.model is not None
                 else tiny_captioner(world, args.seed))
    manifest = world.scenes[["id", "image", "alt_text"]]
    which = f"model {args.model}" if args.model else "tiny random-weight captioner"
    print(f"{len(manifest)} images, {which}, {args.max_new_tokens} new tokens, "
          f"{torch.get_num_threads()} threads; set up in {time.perf_counter() - started:.0f}s",
          flush=True)
    # Warm-up: the first generate call pays one-off allocation and kernel selection.
    timed_run(manifest.head(4), generator,
              RecaptionParams(backend="local", batch_size=4, max_new_tokens=2), "warm-up")

    common = {"backend": "local", "max_new_tokens": args.max_new_tokens,
              "shard_size": max(args.batch_size * args.window, 64)}
    single_rate, single = timed_run(
        manifest, generator,
        RecaptionParams(**common, batch_size=1, length_group_window=1), "one-by-one")
    label = f"batched ({args.batch_size}, length-grouped)"
    batched_rate, batched = timed_run(
        manifest, generator,
        RecaptionParams(**common, batch_size=args.batch_size,
                          length_group_window=args.window), label)
    same = sum(batched.get(i) == caption for i, caption in single.items())
    print(f"{label} vs one-by-one: {batched_rate / single_rate:.1f}x captions/s, "
          f"same captions {same}/{len(manifest)}")


if __name__ == "__main__":
    main()
