"""Does the filter catch garbage? Plant it in a copy of the pool and measure.

    python -m sail_pipeline.quality.garbage            # after `make run`
    python -m sail_pipeline.quality.garbage --env micro --per-kind 20

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

import argparse
import re
import sys

import numpy as np
import pandas as pd

from sail_pipeline.world.palette import COLOURS
from sail_pipeline.world.vocab import NUMBER_WORDS

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default=None, help="Kedro environment (default: base+local)")
    parser.add_argument("--clean", type=int, default=600, help="clean captions (default 600)")
    parser.add_argument("--per-kind", type=int, default=200,
                        help="garbage captions of each kind (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from sail_pipeline.context import last_validated
    from sail_pipeline.pipelines.quality.nodes import _ground_truth, quality_signals
    from sail_pipeline.project_catalog import project_catalog
    from sail_pipeline.quality.filter import decide

    catalog = project_catalog(args.env)
    params = last_validated()  # validated by the context the catalog came from
    if params is None or params.quality is None or params.curation is None:
        print("the project's parameters have no `quality` or `curation` section",
              file=sys.stderr)
        return 1
    manifest = catalog.load("curation_manifest")
    scenes = catalog.load("world_scenes")
    reference = set(catalog.load("reference_captions")["id"])
    truth = {row_id: caption for row_id, caption in zip(
        manifest["id"], _ground_truth(manifest, scenes.assign(
            ground_truth=scenes["reference_caption"]), params.curation), strict=True)
        if caption is not None and row_id not in reference}
    if not truth:
        print("no world pool ids outside the reference set: nothing to plant", file=sys.stderr)
        return 1
    clean = pd.DataFrame({"id": list(truth), "caption": list(truth.values())}).sample(
        n=min(args.clean, len(truth)), random_state=args.seed).reset_index(drop=True)
    planted = plant(clean, args.per_kind, args.seed)
    candidates = planted.assign(source="pool")[["id", "source", "caption"]]
    signals = quality_signals(candidates, manifest, scenes, catalog.load("quality_clip_model"),
                              catalog.load("captioner_model"), catalog.load("tokenizer"),
                              params.quality, params.curation,
                              catalog.load("quality_signal_cache"))
    decisions, _, _ = decide(signals, params.quality.filter)
    table = measure(planted, decisions)
    reasons = planted.assign(reasons=decisions["reasons"].to_numpy())
    missed = reasons[(reasons["kind"] != "clean") & (reasons["reasons"] == "")]
    catalog.save("quality_garbage", table)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if len(missed):
        print("\ngarbage that slipped through (the planted caption, then the image's own):")
        own = dict(zip(clean["id"], clean["caption"], strict=True))
        for row in missed.groupby("kind").head(5).itertuples():
            print(f"  {row.kind}: {row.caption!r}\n      own: {own[row.id]!r}")
    clean_rate = float(table.loc[table["kind"] == "clean", "rate"].iloc[0])
    recall = float(table.loc[table["kind"] == "all garbage", "rate"].iloc[0])
    print(f"\nfalse rejection on clean captions: {clean_rate:.1%} (goal < 5%)")
    print(f"recall on garbage: {recall:.1%} (goal >= 95%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
