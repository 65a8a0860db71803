"""Does the filter catch garbage? Plant it in a copy of the pool and measure.

    sail-quality-garbage            # after `make run` (sail_pipeline.cli.quality_garbage)
    sail-quality-garbage --env micro --per-kind 20

Clean captions are the world's ground-truth captions of kept pool ids outside the reference
set, so neither the stand-in CLIP nor the captioner (the likelihood's reference VLM) has seen
them. Each kind of garbage is made from a clean caption of the same ids: the caption of another
image, its words shuffled, one phrase repeated, empty or one word, a wrong colour, a wrong
count. All rows go through the run's signals (cached) and the run's `quality.filter`; the
command prints the filter's recall on each kind and its false-rejection rate on the clean
captions, and writes them to data/08_reporting/quality_garbage.csv. It changes no file of the
run except that cache.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from sail_pipeline.schema.palette import COLOURS
from sail_pipeline.schema.vocab import NUMBER_WORDS

KINDS = ("other_image", "shuffled_words", "repeated_phrase", "empty_or_one_word",
         "wrong_colour", "wrong_count")
_COLOUR = re.compile(r"\b(" + "|".join(sorted(COLOURS, key=len, reverse=True)) + r")\b")
_COUNT = re.compile(r"\b(" + "|".join(w for w in NUMBER_WORDS if w) + r")\b", re.IGNORECASE)


def _swap(pattern: re.Pattern, options: list[str], caption: str, rng: np.random.Generator
          ) -> str | None:
    match = pattern.search(caption)
    if match is None:
        return None
    other = [o for o in options if o.lower() != match.group(0).lower()]
    word = str(rng.choice(other))
    if match.group(0)[0].isupper():
        word = word.capitalize()
    return caption[:match.start()] + word + caption[match.end():]


def plant(clean: pd.DataFrame, per_kind: int, seed: int) -> pd.DataFrame:
    """`clean` (id, caption) plus `per_kind` garbage rows of each kind; column `kind`."""
    rng = np.random.default_rng(seed)
    rows = [clean.assign(kind="clean")]
    for k, kind in enumerate(KINDS):
        sample = clean.sample(n=min(per_kind, len(clean)), random_state=seed + k)
        captions: list[str | None] = []
        for caption in sample["caption"]:
            words = caption.split()
            if kind == "other_image":
                captions.append(str(rng.choice(clean["caption"][clean["caption"] != caption])))
            elif kind == "shuffled_words":
                captions.append(" ".join(rng.permutation(words)))
            elif kind == "repeated_phrase":
                captions.append(" ".join(words[:3] * 6))
            elif kind == "empty_or_one_word":
                captions.append("" if rng.random() < 0.5 else str(rng.choice(words)))
            elif kind == "wrong_colour":
                captions.append(_swap(_COLOUR, list(COLOURS), caption, rng))
            else:
                captions.append(_swap(_COUNT, [w for w in NUMBER_WORDS[1:6]], caption, rng))
        planted = sample.assign(caption=captions, kind=kind)
        rows.append(planted[planted["caption"].notna()])
    return pd.concat(rows, ignore_index=True)


def measure(planted: pd.DataFrame, decisions: pd.DataFrame) -> pd.DataFrame:
    """Per kind: rows, rejected, and the rate (recall on garbage, false rejection on clean)."""
    table = planted.assign(rejected=~decisions["kept"].to_numpy())
    out = table.groupby("kind", sort=False)["rejected"].agg(["size", "sum"]).rename(
        columns={"size": "rows", "sum": "rejected"})
    out["rate"] = out["rejected"] / out["rows"]
    garbage = table[table["kind"] != "clean"]
    out.loc["all garbage"] = [len(garbage), int(garbage["rejected"].sum()),
                              float(garbage["rejected"].mean())]
    return out.reset_index()
