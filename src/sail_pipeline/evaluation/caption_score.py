"""Score any caption column of the world's scenes against their ground truth.

The same fact recall / precision as the ``world_caption`` task, without a model: how good
the alt-text, the reference captions or a recaptioner's output are as captions.

    python -m sail_pipeline.evaluation.caption_score --column alt_text
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from sail_pipeline.evaluation import world_metrics as wm
from sail_pipeline.evaluation.tasks import task_kind
from sail_pipeline.world import Scene, WorldParams
from sail_pipeline.world.captions import caption_facts, fact_vocabulary


def score_captions(scenes: pd.DataFrame, captions: Sequence[str],
                   ocr_words: Sequence[str] | None = None) -> dict[str, float]:
    """F1 (``score``) and object / attribute recall and precision of ``captions``.

    ``scenes`` needs the ``ground_truth`` column; ``captions`` are in the same order.
    """
    if len(captions) != len(scenes):
        raise ValueError(f"{len(captions)} captions for {len(scenes)} scenes")
    truths = [Scene.from_dict(json.loads(raw)) for raw in scenes["ground_truth"]]
    if ocr_words is None:
        # The words these scenes show, and the default ones: a world generated with other
        # words still has every written word it can show counted.
        ocr_words = sorted({t.text for t in truths if t.text} | set(WorldParams().ocr_words))
    vocabulary = fact_vocabulary(list(ocr_words))
    counts = [wm.caption_counts(str(caption), caption_facts(truth), vocabulary)
              for caption, truth in zip(captions, truths, strict=True)]
    # The world_caption task's own metrics and aggregations, so the two can never disagree.
    return {metric: getattr(wm, aggregation)(counts)
            for metric, aggregation in task_kind("caption").metrics.items()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=Path, default=None,
                        help="the world's scene table (default: the catalog's `world_scenes` "
                             "of --env)")
    parser.add_argument("--env", default=None,
                        help="Kedro environment whose catalog names the scene table")
    parser.add_argument("--column", default="alt_text",
                        help="caption column to score (default: %(default)s)")
    parser.add_argument("--split", default="benchmark", choices=["train", "benchmark", "all"],
                        help="which scenes (default: %(default)s, the held-out ones)")
    args = parser.parse_args(argv)
    if args.scenes is None:
        from sail_pipeline.project_catalog import project_catalog

        catalog = project_catalog(args.env)
        if not catalog.exists("world_scenes"):
            parser.error("the world's scene table does not exist: run `kedro run "
                         "--pipelines=data` first, or give --scenes")
        scenes = catalog.load("world_scenes")
        args.scenes = "world_scenes"
    elif not args.scenes.exists():
        parser.error(f"{args.scenes} not found: run `kedro run --pipelines=data` first")
    else:
        scenes = pd.read_parquet(args.scenes)
    if args.column not in scenes.columns:
        parser.error(f"{args.scenes} has no column {args.column!r}; it has {list(scenes.columns)}")
    if args.split != "all":
        scenes = scenes[scenes["split"] == args.split]
    scores = score_captions(scenes, scenes[args.column].tolist())
    print(f"{args.column} on {len(scenes)} {args.split} scenes: "
          + ", ".join(f"{name} {value:.3f}" for name, value in scores.items()))


if __name__ == "__main__":
    main()
