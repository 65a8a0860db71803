"""tools/photo_folder.py: the folder of real photos with long alt-texts (issue #25's run) and
the report of where each photo ended."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import photo_folder  # noqa: E402


def test_make_writes_nine_photos_with_long_sidecars_and_the_conf(tmp_path, capsys):
    folder = tmp_path / "photos"
    assert photo_folder.main(["make", str(folder)]) == 0
    images = sorted(p for p in folder.iterdir() if p.suffix != ".txt")
    assert len(images) == 9
    for path in images:
        with Image.open(path) as image:
            assert 300 <= max(image.size) <= 1000, (path.name, image.size)
    sidecars = sorted(len(p.read_text(encoding="utf-8")) for p in folder.glob("*.txt"))
    assert sidecars[-1] > 100_000 and sidecars[-3] > 2000  # runaway, and past curation's cap
    conf = yaml.safe_load(capsys.readouterr().out.split("conf/local/parameters_curation.yml:")[1])
    assert conf["curation"]["sources"][1] == {"kind": "folder", "name": "photos",
                                              "path": str(folder.resolve())}


def test_report_names_each_photos_outcome(tmp_path, capsys):
    data = tmp_path / "data"
    for layer in ("02_intermediate", "04_feature", "08_reporting"):
        (data / layer).mkdir(parents=True)
    pd.DataFrame({"id": ["photos:a.jpg", "photos:b.jpg", "world:1"],
                  "source": ["photos", "photos", "world"], "width": [640, 300, 64],
                  "height": [427, 352, 64], "alt_text": ["x" * 2000, None, "a red circle"],
                  "normalised": ["alt_text_truncated", "", ""]}
                 ).to_parquet(data / "02_intermediate/curation_manifest.parquet")
    pd.DataFrame({"id": ["photos:c.png"], "source": ["photos"], "source_id": ["c.png"],
                  "reason": ["too_small"], "detail": ["8x8"]}
                 ).to_parquet(data / "02_intermediate/curation_quarantine.parquet")
    pd.DataFrame({"id": ["photos:a.jpg", "world:1"], "caption": ["a harbour", "a circle"],
                  "prompt_kind": ["recaption", "recaption"], "backend": ["local", "local"]}
                 ).to_parquet(data / "04_feature/recaptions.parquet")
    pd.DataFrame({"id": ["photos:b.jpg"], "error": ["empty caption"]}
                 ).to_parquet(data / "04_feature/recaption_failures.parquet")
    pd.DataFrame({"stage": ["note"], "reason": ["alt_text_truncated"], "count": [1]}
                 ).to_csv(data / "08_reporting/curation_funnel.csv", index=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert photo_folder.main(["report", "--data", str(data), "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert "| a.jpg | 640x427 | 2000 | alt_text_truncated | captioned (recaption prompt) |" in out
    assert "| b.jpg | 300x352 | - | - | failed: empty caption |" in out
    assert "| c.png | - | - | quarantined: too_small | - |" in out
    assert "curation: 1 alt-text(s) cut" in out
    assert out.strip().splitlines()[-1] == ("photos: 3 accounted for in curation, 2 of 2 kept "
                                           "captioned or failed with a reason")
