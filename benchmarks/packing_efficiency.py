"""Fraction of real (non-pad) tokens in the batches the trainer builds: packed vs padded.

On the world's SFT data (knowledge, instruction, preference, and all three mixed as a
one-stage SFT would see them). Padded = a Hugging Face collator's pad-to-longest batches of
`--batch` samples, in random order or with `group_by_length`'s sampler; packed = best-fit rows
of `--max-seq-len` tokens in micro batches of `--rows` rows, the trainer's default, over
`--epochs` epochs (so the micro batches that straddle two epochs count).

    python benchmarks/packing_efficiency.py            # prints the smallest packed fraction last
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import SFT_STAGES, markdown, world_sft  # noqa: E402

from sail_pipeline.training.packing import (  # noqa: E402
    length_grouped_efficiency,
    padding_efficiency,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=2000, help="scenes in the world")
    parser.add_argument("--max-seq-len", type=int, default=256, help="tokens per packed row")
    parser.add_argument("--batch", type=int, default=64, help="samples per padded batch")
    parser.add_argument("--rows", type=int, default=12, help="packed rows per micro batch")
    parser.add_argument("--epochs", type=int, default=2, help="packed epochs to count")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data, _ = world_sft(args.n_train, args.seed, max_seq_len=args.max_seq_len)
    sets = {name: data[name].samples for name in SFT_STAGES}
    sets["all SFT mixed"] = [s for name in SFT_STAGES for s in data[name].samples]
    rows = []
    for name, samples in sets.items():
        lengths = [len(s) for s in samples]
        rows.append({
            "data": name, "samples": len(samples),
            "mean tokens": sum(lengths) / len(lengths),
            "padded": padding_efficiency(samples, args.batch, args.seed, False, args.max_seq_len),
            "padded, group_by_length": length_grouped_efficiency(samples, args.batch, args.seed),
            "packed": padding_efficiency(samples, args.rows, args.seed, True, args.max_seq_len,
                                         args.epochs),
        })
    print(markdown(rows))
    worst = min(rows, key=lambda row: row["packed"])
    print(f"real-token fraction, packed, lowest of the stages: {worst['packed']:.3f} "
          f"({worst['data']}; group_by_length {worst['padded, group_by_length']:.3f}; rows of "
          f"{args.max_seq_len}, {args.rows} a micro batch, {args.epochs} epochs)")


if __name__ == "__main__":
    main()
