"""A folder of real photos with long alt-texts, as a new user would add it, and its accounting.

    python tools/photo_folder.py make data/01_raw/photos     # the folder + the conf to add
    kedro run --pipelines=curation,captioning,quality        # with that conf in conf/local
    python tools/photo_folder.py report                      # where each photo ended

`make` writes nine photos of 300-1000 px (crops and resizes of the photographs that
matplotlib and scikit-learn ship, so nothing is downloaded) with sidecar alt-texts: short ones,
a 120 KB one, a 456 KB CJK one and one of 2440 characters. It prints the YAML that adds the
folder as a second curation source beside the world; put it in
`conf/local/parameters_curation.yml`. `report` reads the run's tables and its MLflow run:
each photo kept or quarantined, its notes, its caption or failure, and the counts of truncated
alt-texts. This is issue #25's run, which once grew to 20 GB and was killed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

LONG = "sunset over the harbour with fishing boats, gulls and a lighthouse on the cliff " * 1500
CJK = "港口的日落，渔船、海鸥和悬崖上的灯塔。" * 8000
MEDIUM = "a close-up of a flower with pink petals and a yellow centre, " * 40


def _sources() -> list[Path]:
    import matplotlib
    import sklearn

    found = [Path(matplotlib.get_data_path()) / "sample_data/grace_hopper.jpg",
             Path(sklearn.__file__).parent / "datasets/images/china.jpg",
             Path(sklearn.__file__).parent / "datasets/images/flower.jpg"]
    missing = [str(p) for p in found if not p.exists()]
    if missing:
        sys.exit(f"sample photos not found: {missing} (matplotlib and scikit-learn ship them)")
    return found


def make(folder: Path) -> dict:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    hopper, china, flower = (Image.open(p).convert("RGB") for p in _sources())
    photos = {  # name: (image, alt-text or None)
        "hopper.jpg": (hopper, "portrait of a woman in a naval uniform"),
        "hopper_small.jpg": (hopper.resize((300, 352)), None),
        "china.jpg": (china, LONG),
        "china_crop.png": (china.crop((100, 50, 600, 400)), "a temple roof among trees"),
        "china_large.jpg": (china.resize((1000, 667)), CJK),
        "flower.jpg": (flower, MEDIUM),
        "flower_crop.jpg": (flower.crop((0, 0, 400, 400)), "pink flower"),
        "flower_wide.png": (flower.resize((960, 320)), "a panorama of a flower"),
        "hopper_crop.jpg": (hopper.crop((100, 100, 450, 500)), "a face"),
    }
    for name, (image, alt) in photos.items():
        image.save(folder / name, quality=90) if name.endswith(".jpg") else image.save(folder / name)
        if alt is not None:
            (folder / name).with_suffix(".txt").write_text(alt, encoding="utf-8")
    return {"curation": {"sources": [{"kind": "world", "name": "world", "splits": ["train"]},
                                     {"kind": "folder", "name": "photos",
                                      "path": str(folder.resolve())}]}}


def report(data: Path, tracking_uri: str | None) -> None:
    import pandas as pd

    manifest = pd.read_parquet(data / "02_intermediate/curation_manifest.parquet",
                               columns=["id", "source", "width", "height", "alt_text",
                                        "normalised"])
    quarantine = pd.read_parquet(data / "02_intermediate/curation_quarantine.parquet")
    captions = pd.read_parquet(data / "04_feature/recaptions.parquet").set_index("id")
    failures = pd.read_parquet(data / "04_feature/recaption_failures.parquet").set_index("id")
    photos = manifest[manifest["source"] == "photos"]
    print("| photo | size | alt-text kept (chars) | notes | recaption |")
    print("|---|---|---|---|---|")
    for row in photos.itertuples():
        if row.id in captions.index:
            outcome = f"captioned ({captions.at[row.id, 'prompt_kind']} prompt)"
        else:
            outcome = f"failed: {failures.at[row.id, 'error']}" if row.id in failures.index \
                else "missing"
        alt = str(len(row.alt_text)) if isinstance(row.alt_text, str) else "-"
        print(f"| {row.id.split(':', 1)[1]} | {row.width}x{row.height} | {alt} | "
              f"{row.normalised or '-'} | {outcome} |")
    for row in quarantine[quarantine["source"] == "photos"].itertuples():
        print(f"| {row.source_id} | - | - | quarantined: {row.reason} | - |")
    funnel = pd.read_csv(data / "08_reporting/curation_funnel.csv")
    cut = int(funnel.loc[funnel["reason"] == "alt_text_truncated", "count"].sum())
    print(f"curation: {cut} alt-text(s) cut to curation.settings.max_alt_text_chars "
          f"(note alt_text_truncated)")
    metric = _last_metric(tracking_uri, "recaption/noted/alt_text_truncated")
    print(f"recaptioning: {metric if metric is not None else 0:.0f} alt-text(s) cut to "
          f"captioning.recaption.max_alt_text_chars in the prompt (MLflow "
          f"recaption/noted/alt_text_truncated)")
    accounted = len(photos) + int((quarantine["source"] == "photos").sum())
    done = sum(i in captions.index or i in failures.index for i in photos["id"])
    print(f"photos: {accounted} accounted for in curation, {done} of {len(photos)} kept "
          f"captioned or failed with a reason")


def _last_metric(tracking_uri: str | None, key: str) -> float | None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string=f"metrics.`{key}` >= 0",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].data.metrics[key] if runs else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    made = sub.add_parser("make", help="write the photo folder and print the conf to add")
    made.add_argument("folder", type=Path)
    reported = sub.add_parser("report", help="where each photo ended, after the run")
    reported.add_argument("--data", type=Path, default=Path("data"))
    reported.add_argument("--tracking-uri", default=None,
                          help="MLflow's (default: MLFLOW_TRACKING_URI, or ./mlflow.db)")
    args = parser.parse_args(argv)
    if args.command == "make":
        conf = make(args.folder)
        print(f"wrote 9 photos to {args.folder}; add to conf/local/parameters_curation.yml:")
        print(yaml.safe_dump(conf, sort_keys=False))
    else:
        import os

        uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") \
            or f"sqlite:///{Path('mlflow.db').resolve()}"
        report(args.data, uri)
    return 0


if __name__ == "__main__":
    sys.exit(main())
