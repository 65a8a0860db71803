"""`sail-quality-garbage`: does the filter catch garbage? Plant it in a copy of the pool and
measure (sail_pipeline.quality.garbage says how).

    sail-quality-garbage                       # after `make run`
    sail-quality-garbage --env micro --per-kind 20
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from sail_pipeline.quality.garbage import measure, plant


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default=None, help="Kedro environment (default: base+local)")
    parser.add_argument("--clean", type=int, default=600, help="clean captions (default 600)")
    parser.add_argument("--per-kind", type=int, default=200,
                        help="garbage captions of each kind (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from sail_pipeline.glue.project import load_project
    from sail_pipeline.glue.project_catalog import project_catalog
    from sail_pipeline.pipelines.quality.nodes import quality_signals
    from sail_pipeline.quality.filter import decide
    from sail_pipeline.quality.ground_truth import ground_truth

    catalog = project_catalog(args.env)
    params = load_project(args.env)
    if params is None or params.quality is None or params.curation is None:
        print("the project's parameters have no `quality` or `curation` section",
              file=sys.stderr)
        return 1
    manifest = catalog.load("curation_manifest")
    scenes = catalog.load("world_scenes")
    reference = set(catalog.load("reference_captions")["id"])
    truth = {row_id: caption for row_id, caption in zip(
        manifest["id"], ground_truth(manifest, scenes.assign(
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
