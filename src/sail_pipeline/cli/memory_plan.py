"""`sail-memory-plan`: what fits on which GPUs (sail_pipeline.training.memory_plan's estimates).

    sail-memory-plan --preset sail-vl-2b --gpus 8 --gpu-gib 80
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from typing import Any

from sail_pipeline.training.memory_plan import (
    HEADROOM_FRACTION,
    MODULE_ORDER,
    describe_recommendation,
    grid,
    markdown_table,
    model_shapes,
    recommend,
    where_table,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sail-memory-plan",
        description="Estimate per-GPU memory of a model preset under DeepSpeed ZeRO 0-3 "
                    "(bf16 weights + fp32 Adam) and print a markdown table of what fits, "
                    "with a recommended setting. Estimates, not measurements: "
                    f"{HEADROOM_FRACTION:.0%} of GPU memory is kept as headroom.",
    )
    parser.add_argument("--preset", default="sail-vl-2b", help="model preset (default: %(default)s)")
    parser.add_argument("--gpus", type=int, default=1,
                        help="data-parallel GPUs ZeRO partitions over (default: %(default)s)")
    parser.add_argument("--gpu-gib", type=float, default=80.0,
                        help="memory of one GPU in GiB (default: %(default)s)")
    parser.add_argument("--micro-batch", type=int, default=1,
                        help="sequences per GPU per forward in the table (default: %(default)s)")
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[4096, 8192],
                        help="sequence lengths of the table (default: %(default)s)")
    parser.add_argument("--recommend-seq-len", type=int, default=4096,
                        help="sequence length of the recommendation (default: %(default)s)")
    parser.add_argument("--tiles", type=int, default=None,
                        help="ViT tiles per sequence (default: one full image: max_tiles + "
                             "thumbnail)")
    parser.add_argument("--trainable", nargs="+", choices=list(MODULE_ORDER), default=None,
                        help="module groups that train (default: all, as in SFT)")
    parser.add_argument("--vocab-size", type=int, default=None,
                        help="embedding rows of the LLM (default: the preset's own, e.g. "
                             "151936 for sail-vl-2b, 32000 for llava-1.5-7b)")
    parser.add_argument("--no-flash", action="store_true",
                        help="attention without flash-attention (stores the s² scores)")
    parser.add_argument("--where", nargs="+", metavar="GPUSxGIB", default=None,
                        help="instead of the grid, one recommendation per setup, e.g. "
                             "--where 1x80 8x80 1x40 1x24 (the README's what-fits-where table)")
    args = parser.parse_args(argv)

    settings: dict[str, Any] = {
        "flash": not args.no_flash, "tiles": args.tiles, "vocab_size": args.vocab_size,
        "trainable": set(args.trainable) if args.trainable else None,
    }
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # keep transformers' chatter off
            shapes = model_shapes(args.preset, args.vocab_size)
    except KeyError as error:
        parser.error(str(error.args[0]))
    trainable = shapes.trainable_params(settings["trainable"])
    if args.where:
        print(where_table(args.preset, args.where, args.recommend_seq_len, **settings))
        return 0
    print(f"Memory plan for {args.preset}: {shapes.params / 1e9:.2f} B parameters "
          f"({trainable / 1e9:.2f} B trainable), {args.gpus} x {args.gpu_gib:g} GiB GPU, "
          f"flash-attention {'off' if args.no_flash else 'on'}, tiles per sequence "
          f"{args.tiles if args.tiles is not None else 'one full image'}.\n")
    rows = grid(args.preset, args.gpus, args.gpu_gib, args.micro_batch, tuple(args.seq_lens),
                **settings)
    print(markdown_table(rows))
    best = recommend(args.preset, args.gpus, args.gpu_gib, args.recommend_seq_len, **settings)
    print()
    print(describe_recommendation(best, args.gpus, args.gpu_gib, args.recommend_seq_len))
    if args.gpus == 1:
        print("(On one GPU ZeRO 1-2 partition nothing; they pay off from 2 GPUs on.)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
