"""Settings that are each valid but cannot work together fail at start with the fix; settings
the user probably did not mean are said at start; an empty captioner table stops before
DeepSpeed is launched."""

from __future__ import annotations

import pandas as pd
import pytest

from sail_pipeline.glue.validation import advisories, combination_problems, validate_project
from sail_pipeline.schema.project import deep_merge
from tests.test_schema_properties import BASE

PHOTOS = {"curation": {"sources": [{"kind": "folder", "name": "photos", "path": "/data/photos"}]}}
API = {"base_url": "http://127.0.0.1:8000/v1", "model": "qwen2-vl"}


def test_the_oracle_with_only_your_own_photos_fails_at_start_with_the_fix():
    photos = validate_project(deep_merge(BASE, PHOTOS))  # valid: curation alone can run
    assert combination_problems(photos, {"curate", "curation_funnel"}) == []
    problems = combination_problems(photos, {"curate", "reference_captions", "quality_signals"})
    assert [p.split(":")[0] for p in problems] == ["captioning.reference.backend",
                                                  "quality.judge.backend"]
    assert all("`oracle` reads the embedded world's ground truth" in p for p in problems)
    assert "use `backend: api` with `api: {base_url: ..., model: ...}`" in problems[0]
    fixed = validate_project(deep_merge(BASE, PHOTOS | {
        "captioning": {"reference": {"backend": "api", "api": API}},
        "quality": {"judge": {"backend": "api", "api": API}}}))
    assert combination_problems(fixed, {"reference_captions", "quality_signals"}) == []
    # Beside the world, the oracle still captions the world's scenes: allowed.
    both = validate_project(deep_merge(BASE, {"curation": {"sources": [
        *PHOTOS["curation"]["sources"], {"kind": "world", "name": "world"}]}}))
    assert combination_problems(both, {"reference_captions"}) == []


@pytest.mark.slow
def test_kedro_run_stops_before_the_first_node_of_a_pipeline_that_cannot_run(tmp_path):
    import yaml

    from tests.project import make_project, run

    project = make_project(tmp_path)
    (project / "conf/local").mkdir(exist_ok=True)
    (project / "conf/local/parameters_curation.yml").write_text(yaml.safe_dump(PHOTOS))
    outcome = run(project, "kedro", "run", "--pipelines=captioning", timeout=300)
    assert outcome.returncode == 2, outcome.stderr[-2000:]
    assert "captioning.reference.backend: `oracle` reads the embedded world's" in outcome.stderr
    assert "Traceback" not in outcome.stdout + outcome.stderr
    assert not (project / "data" / "03_primary").exists()  # no node ran


def test_near_duplicates_left_off_for_your_own_sources_is_said_at_start():
    assert advisories(validate_project(BASE)) == []
    fixed = deep_merge(BASE, PHOTOS | {
        "captioning": {"reference": {"backend": "api", "api": API}},
        "quality": {"judge": {"backend": "api", "api": API}}})
    [note] = advisories(validate_project(fixed))  # curation's own setting, said for any run
    assert note.startswith("curation.settings.near_duplicate_max_distance is null")
    on = deep_merge(fixed, {"curation": {"settings": {"near_duplicate_max_distance": 6}}})
    assert advisories(validate_project(on)) == []


def test_an_empty_captioner_table_stops_before_training(tmp_path, monkeypatch):
    from sail_pipeline.pipelines.captioning import nodes

    def launched(*args, **kwargs):
        raise AssertionError("DeepSpeed was launched on an empty table")

    monkeypatch.setattr(nodes.engine_stage, "train", launched)
    empty = tmp_path / "captioner_train.parquet"
    pd.DataFrame({"id": pd.Series([], dtype=str), "messages": pd.Series([], dtype=str)}
                 ).to_parquet(empty)
    project = validate_project(BASE)
    with pytest.raises(nodes.NoCaptionerData, match="the captioner has no training rows"):
        nodes.train_captioner(str(empty), str(empty), "tok", {"hf_dir": "l"}, {"hf_dir": "v"},
                              project.captioning.captioner, "tiny", project.runtime,
                              str(tmp_path / "work"))
