"""Our text signals beside data-juicer's operators, on the same captions, side by side.

data-juicer is not a dependency of this project (it pins its own stack); install it into a
separate environment and name its Python:

    uv venv /tmp/djvenv && uv pip install --python /tmp/djvenv/bin/python py-data-juicer aiohttp
    python benchmarks/quality_vs_data_juicer.py --dj-python /tmp/djvenv/bin/python

data-juicer computes three of our statistics with `compute_stats_batched`: word count
(WordsNumFilter), word-repetition ratio (WordRepetitionFilter, rep_len 5 as ours) and
special-character ratio (SpecialCharactersFilter). The script times both sides on the same
captions, reports how often the values agree, and prints the captions/s ratio last. Our side
is timed computing all of its text signals (n-grams, POS tags, tokens included), data-juicer's
only those three, so the ratio favours data-juicer.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from sail_pipeline.quality.text import text_signals  # noqa: E402
from sail_pipeline.world import WorldParams, generate_world  # noqa: E402

_DJ_SIDE = r"""
import json, sys, time
from data_juicer.ops.filter import SpecialCharactersFilter, WordRepetitionFilter, WordsNumFilter
from data_juicer.utils.constant import Fields
texts = json.load(open(sys.argv[1]))
ops = [WordsNumFilter(lang="en", tokenization=False),
       WordRepetitionFilter(rep_len=5, lang="en", tokenization=False),
       SpecialCharactersFilter()]
best = float("inf")
for _ in range(int(sys.argv[3])):
    samples = {"text": list(texts), Fields.stats: [{} for _ in texts]}
    started = time.perf_counter()
    for op in ops:
        samples = op.compute_stats_batched(samples)
    best = min(best, time.perf_counter() - started)
json.dump({"seconds": best, "stats": samples[Fields.stats]}, open(sys.argv[2], "w"))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dj-python", required=True,
                        help="the Python of an environment with py-data-juicer installed")
    parser.add_argument("--n", type=int, default=3000, help="world scenes (captions)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    world = generate_world(WorldParams(n_train=args.n, n_benchmark=0, seed=0))
    # Reference captions and alt-texts, plus repeated phrases so repetition is not all zero.
    captions = [*world.scenes["reference_caption"], *world.scenes["alt_text"].dropna(),
                *(" ".join(c.split()[:3] * 6) for c in world.scenes["reference_caption"][:300])]
    text_signals(captions[:8])  # warm-up: the tagger's lexicon
    ours_seconds = float("inf")
    for _ in range(args.repeats):
        started = time.perf_counter()
        ours = text_signals(captions)
        ours_seconds = min(ours_seconds, time.perf_counter() - started)
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "captions.json", Path(folder) / "stats.json"
        source.write_text(json.dumps(captions))
        subprocess.run([args.dj_python, "-c", _DJ_SIDE, str(source), str(target),
                        str(args.repeats)], check=True, capture_output=True, text=True)
        theirs = json.loads(target.read_text())
    stats = theirs["stats"]
    pairs = {"words / num_words": (ours["words"], [s["num_words"] for s in stats]),
             "word_repetition_ratio / word_rep_ratio":
                 (ours["word_repetition_ratio"], [s["word_rep_ratio"] for s in stats]),
             "special_char_ratio / special_char_ratio":
                 (ours["special_char_ratio"], [s["special_char_ratio"] for s in stats])}
    print(f"{len(captions)} captions")
    print("| statistic (ours / data-juicer) | equal (to 1e-9) | mean ours | mean data-juicer |")
    print("|---|---|---|---|")
    for name, (mine, dj) in pairs.items():
        mine, dj = np.asarray(mine, dtype=float), np.asarray(dj, dtype=float)
        equal = np.isclose(mine, dj, atol=1e-9).mean()
        print(f"| {name} | {equal:.1%} | {mine.mean():.4f} | {dj.mean():.4f} |")
    print(f"data-juicer's 3 operators: {len(captions) / theirs['seconds']:.0f} captions/s; "
          f"ours, every text signal: {len(captions) / ours_seconds:.0f} captions/s")
    print(f"text signals, ours vs data-juicer: {theirs['seconds'] / ours_seconds:.2f}x "
          f"captions/s ({len(captions)} captions, ours computing more)")


if __name__ == "__main__":
    main()
