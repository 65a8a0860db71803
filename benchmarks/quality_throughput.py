"""Caption-image pairs/s of the quality signals: batched vs a per-row loop, same values.

Section 1 measures `sail_pipeline.quality.text` and `.image` on the world's reference captions
and images: `naive_*_signals` (one caption or image at a time, a DataFrame a row, scipy per
image) against `text_signals` / `image_signals` (one pass over the batch). Both sides must
give the same table (text exactly; image to 1e-12, float summation order). It also times the
image decode alone, which both sides share and which bounds the image speed-up.
Section 2 (CLIP-score pairs/s at batch 1 vs batched) is `clip_section`.

Each section prints its table as it goes and returns its summary lines; all of them are
printed last, the text + image speed-up first.

    python benchmarks/quality_throughput.py            # 3000 pairs, best of 3
    python benchmarks/quality_throughput.py --n 500 --repeats 1
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))

from _common import markdown  # noqa: E402

from sail_pipeline.modeling.tokenizer import train_tokenizer  # noqa: E402
from sail_pipeline.quality.image import _luma, image_signals, naive_image_signals  # noqa: E402
from sail_pipeline.quality.text import naive_text_signals, text_signals  # noqa: E402
from sail_pipeline.world import WorldParams, generate_world  # noqa: E402


def best_time(function: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """The fastest of `repeats` runs (the machine may be shared), and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return best, result


def signals_section(world, args: argparse.Namespace) -> list[str]:
    """Text + image signals, batched vs per-row, over the same pairs."""
    captions = world.scenes["reference_caption"]
    images = world.scenes["image"]
    tokenizer = train_tokenizer(captions, args.vocab_size)
    # Warm-up: imports, the tagger's lexicon, the character table.
    text_signals(captions.head(8), tokenizer)
    naive_text_signals(captions.head(8), tokenizer)
    image_signals(images.head(8))
    naive_image_signals(images.head(8))

    seconds: dict[tuple[str, str], float] = {}
    tables: dict[tuple[str, str], pd.DataFrame] = {}
    runs = {("text", "naive"): lambda: naive_text_signals(captions, tokenizer),
            ("text", "batched"): lambda: text_signals(captions, tokenizer),
            ("image", "naive"): lambda: naive_image_signals(images),
            ("image", "batched"): lambda: image_signals(images)}
    for key, run in runs.items():
        seconds[key], tables[key] = best_time(run, args.repeats)
        print(f"{key[0]:5s} {key[1]:7s}: {seconds[key]:.2f}s", flush=True)
    pd.testing.assert_frame_equal(tables["text", "batched"], tables["text", "naive"],
                                  check_exact=True)
    pd.testing.assert_frame_equal(tables["image", "batched"], tables["image", "naive"],
                                  check_exact=False, rtol=1e-12, atol=1e-12)
    decode, _ = best_time(lambda: [_luma(data) for data in images], args.repeats)

    n = len(captions)
    rows = []
    for part in ("text", "image", "text + image"):
        keys = ("text", "image") if part == "text + image" else (part,)
        naive = sum(seconds[k, "naive"] for k in keys)
        batched = sum(seconds[k, "batched"] for k in keys)
        rows.append({"signals": part, "naive us/pair": 1e6 * naive / n,
                     "batched us/pair": 1e6 * batched / n, "naive pairs/s": n / naive,
                     "batched pairs/s": n / batched, "speed-up": naive / batched})
    print(markdown(rows))
    print(f"image decode alone (both sides): {1e6 * decode / n:.0f} us/image", flush=True)
    total = rows[-1]
    return [f"text + image signals, batched vs per-row loop: {total['speed-up']:.1f}x pairs/s "
            f"({total['batched pairs/s']:.0f} vs {total['naive pairs/s']:.0f}; text "
            f"{rows[0]['speed-up']:.1f}x, image {rows[1]['speed-up']:.1f}x; {n} pairs, "
            f"same values)"]


def clip_section(world, args: argparse.Namespace) -> list[str]:
    """CLIP-score pairs/s of `ClipScorer`: one pair per forward pass against batches of 256.

    The stand-in CLIP of the embedded default, untrained (speed does not depend on weights),
    saved and loaded as a Hugging Face directory like the trained one.
    """
    import tempfile

    import numpy as np
    from transformers import CLIPImageProcessor, CLIPModel

    from sail_pipeline.quality.clip import ClipScorer, standin_config
    from sail_pipeline.schema.quality import ClipParams

    n = min(args.clip_pairs, len(world.scenes))
    images = list(world.scenes["image"][:n])
    captions = list(world.scenes["reference_caption"][:n])
    spec = ClipParams()
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = train_tokenizer(captions, args.vocab_size)
        CLIPModel(standin_config(tokenizer, spec)).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        CLIPImageProcessor(size={"shortest_edge": spec.image_size},
                           crop_size={"height": spec.image_size, "width": spec.image_size}
                           ).save_pretrained(folder)
        one, batched = ClipScorer.load(folder, batch_size=1), ClipScorer.load(folder)
        one.score(images[:4], captions[:4])  # warm-up
        seconds_one, (scores_one, _) = best_time(lambda: one.score(images, captions), 1)
        seconds_batched, (scores_batched, _) = best_time(
            lambda: batched.score(images, captions), args.repeats)
    np.testing.assert_allclose(scores_batched, scores_one, atol=1e-3)
    rows = [{"CLIP score": "batch 1", "pairs/s": n / seconds_one},
            {"CLIP score": "batch 256", "pairs/s": n / seconds_batched}]
    print(markdown(rows))
    return [f"CLIP score, batched (256) vs batch 1: {seconds_one / seconds_batched:.1f}x "
            f"pairs/s ({n / seconds_batched:.0f} vs {n / seconds_one:.0f}; {n} pairs, same "
            f"scores to 1e-3)"]


SECTIONS = [signals_section, clip_section]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="The last lines are the ratios, e.g. 'text + image signals, batched vs per-row "
               "loop: 6.0x pairs/s (...)'.")
    parser.add_argument("--n", type=int, default=3000, help="world scenes (caption-image pairs)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs each; best counts")
    parser.add_argument("--vocab-size", type=int, default=1024,
                        help="BPE tokenizer trained on the captions, for the tokens column")
    parser.add_argument("--seed", type=int, default=0, help="world seed")
    parser.add_argument("--clip-pairs", type=int, default=1000,
                        help="pairs scored by CLIP at batch 1 and batched")
    args = parser.parse_args()

    started = time.perf_counter()
    world = generate_world(WorldParams(n_train=args.n, n_benchmark=0, seed=args.seed))
    print(f"world of {args.n} scenes in {time.perf_counter() - started:.0f}s", flush=True)
    summary = [line for section in SECTIONS for line in section(world, args)]
    print("\n".join(summary))


if __name__ == "__main__":
    main()
