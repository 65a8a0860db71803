"""`kedro run --pipelines=curation` on a folder of real images mixed with broken ones."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from sail_pipeline.schema import InvalidParameters, validate_parameters
from tests.curation_fixtures import KEPT, build_messy_folder
from tests.project import make_project, run


@pytest.mark.slow
def test_kedro_curation_accounts_for_every_record(tmp_path):
    (tmp_path / "project").mkdir()
    project = make_project(tmp_path / "project")
    expected = build_messy_folder(tmp_path / "photos")
    local = project / "conf" / "local"
    local.mkdir(parents=True, exist_ok=True)
    (local / "parameters_curation.yml").write_text(yaml.safe_dump({"curation": {
        "sources": [{"kind": "folder", "name": "photos", "path": str(tmp_path / "photos")}],
        "settings": {"near_duplicate_max_distance": 6},
    }}))

    result = run(project, "kedro", "run", "--pipelines=curation")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    manifest = pd.read_parquet(project / "data/02_intermediate/curation_manifest.parquet")
    quarantine = pd.read_parquet(project / "data/02_intermediate/curation_quarantine.parquet")
    outcome = {**dict.fromkeys(manifest["source_id"], KEPT),
               **dict(zip(quarantine["source_id"], quarantine["reason"], strict=True))}
    assert outcome == expected
    assert len(manifest) + len(quarantine) == len(expected)
    assert (manifest["id"] == "photos:" + manifest["source_id"]).all()
    assert quarantine["detail"].str.len().gt(0).all()

    funnel = pd.read_csv(project / "data/08_reporting/curation_funnel.csv")
    totals = funnel[funnel["stage"] == "total"].set_index("reason")["count"]
    assert totals.to_dict() == {"input": len(expected), "kept": len(manifest),
                                "quarantined": len(quarantine)}
    by_reason = funnel[funnel["stage"].isin(["ingest", "validate", "dedup"])]
    counts = quarantine["reason"].value_counts()
    assert {r: c for r, c in zip(by_reason["reason"], by_reason["count"], strict=True) if c} \
        == counts.to_dict()
    assert (project / "data/08_reporting/curation_funnel.png").stat().st_size > 1000


def test_bad_curation_config_fails_naming_the_key():
    params = {"curation": {"sources": [{"kind": "folder", "name": "p", "path": "x"}],
                           "settings": {"max_aspect_ratios": 3}}}
    with pytest.raises(InvalidParameters, match=r"curation\.settings\.max_aspect_ratios"):
        validate_parameters(params)
    with pytest.raises(InvalidParameters, match=r"curation\.sources\.0"):
        validate_parameters({"curation": {"sources": [{"kind": "ftp", "name": "p"}]}})
