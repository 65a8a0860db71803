"""`sail-caption-score`: score a caption column of the world's scenes against their ground
truth (sail_pipeline.evaluation.caption_score), without a model.

    sail-caption-score --column alt_text
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from sail_pipeline.evaluation.caption_score import score_captions


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
        from sail_pipeline.glue.project_catalog import project_catalog

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
