"""A node that cannot run on what it was given says so in one line, with the fix, the way a bad
parameter does (`sail_pipeline.errors.UserError`, printed by `sail_pipeline.cli`); a
precondition the settings alone decide is found before the first node."""

from __future__ import annotations

import pandas as pd
import pytest

from sail_pipeline.errors import TRACEBACK_VARIABLE, UserError, explain
from sail_pipeline.glue.validation import combination_problems, validate_project
from sail_pipeline.schema import InvalidParameters, deep_merge
from sail_pipeline.schema.quality import MIN_CLIP_PAIRS, QualityParams
from tests.test_pipelines import micro_params, run_in_memory
from tests.test_schema_properties import BASE


def _clip_node():
    from sail_pipeline.pipelines.quality import create_pipeline as quality

    return quality().only_nodes("train_quality_clip")


def _pairs(small_world, n: int, empty: int = 0) -> dict[str, pd.DataFrame]:
    train = small_world.scenes[small_world.scenes["split"] == "train"].head(n)
    ids = list("world:" + train["id"])
    captions = [""] * empty + list(train["reference_caption"])[empty:]
    return {"curation_manifest": pd.DataFrame({"id": ids, "image": list(train["image"])}),
            "reference_captions": pd.DataFrame({"id": ids, "caption": captions}),
            "tokenizer": "/not/read/before/the/check"}


def _kedro_run(function) -> None:
    """What `kedro run` does with an error: the project's CLI guard around Kedro's callback."""
    from sail_pipeline.cli import _plain_errors

    _plain_errors(function)()


def test_too_few_pairs_for_the_standin_clip_is_one_line_with_the_fix(
        tmp_path, small_world, capsys, monkeypatch):
    monkeypatch.delenv(TRACEBACK_VARIABLE, raising=False)
    project = micro_params()
    # 25 reference pairs, 10 of them with an empty caption: 15 usable, fewer than 20.
    inputs = _pairs(small_world, 25, empty=10)
    with pytest.raises(SystemExit) as exit_:
        _kedro_run(lambda: run_in_memory(_clip_node(), project, tmp_path, inputs))
    assert exit_.value.code == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    [line] = err.strip().splitlines()
    assert line.startswith(f"TooFewClipPairs: the stand-in CLIP needs at least {MIN_CLIP_PAIRS} "
                           f"(image, caption) pairs and got 15 usable of 25")
    assert "raise captioning.reference.size" in line
    assert "quality.clip: {source: path, path: <a CLIPModel directory>}" in line


def test_a_precondition_keeps_its_traceback_when_asked(tmp_path, small_world, monkeypatch):
    from sail_pipeline.quality.clip import TooFewClipPairs

    monkeypatch.setenv(TRACEBACK_VARIABLE, "1")
    with pytest.raises(TooFewClipPairs):
        _kedro_run(lambda: run_in_memory(_clip_node(), micro_params(), tmp_path,
                                         _pairs(small_world, 5)))


def test_a_reference_set_too_small_for_the_standin_clip_stops_before_the_first_node():
    project = validate_project(deep_merge(BASE, {"captioning": {"reference": {"size": 10}}}))
    [problem] = combination_problems(project, {"reference_captions", "train_quality_clip"})
    assert problem.startswith("captioning.reference.size: the stand-in CLIP")
    assert "raise captioning.reference.size to 20 or more" in problem
    # Only when the stand-in is going to be trained.
    assert combination_problems(project, {"reference_captions", "train_captioner"}) == []
    assert combination_problems(validate_project(BASE), {"train_quality_clip"}) == []


def test_missing_quality_inputs_of_ones_own_are_named_at_start(tmp_path):
    (tmp_path / "not_clip").mkdir()
    with pytest.raises(InvalidParameters) as error:
        validate_project(deep_merge(BASE, {"quality": {
            "sources": ["alt_text", "recaption", "reference", "blip"],
            "extra_sources": [{"name": "blip", "path": str(tmp_path / "blip.parquet")}],
            "clip": {"source": "path", "path": str(tmp_path / "not_clip")}}}))
    lines = [line.strip() for line in str(error.value).splitlines()[1:]]
    assert [line.split(": ")[0] for line in lines] == [
        "quality.extra_sources[0] ('blip').path", "quality.clip.path"]
    assert "is not a Hugging Face CLIPModel directory" in lines[1]


def _one_line(error: BaseException) -> str:
    shown = explain(error)
    assert shown is not None, f"{type(error).__name__} would be printed as a traceback"
    assert "\n" not in shown and "Traceback" not in shown
    return shown


def test_an_extra_caption_file_that_cannot_be_read_names_the_source(tmp_path):
    from sail_pipeline.pipelines.quality.nodes import caption_candidates

    (tmp_path / "blip.parquet").write_text("id,caption\na,not parquet\n")
    params = QualityParams(sources=["alt_text", "blip"], extra_sources=[
        {"name": "blip", "path": tmp_path / "blip.parquet"}])
    manifest = pd.DataFrame({"id": ["a"], "image": [b""], "alt_text": ["x"]})
    captions = pd.DataFrame({"id": ["a"], "caption": ["A red square."]})
    with pytest.raises(UserError) as error:
        caption_candidates(manifest, captions, captions, params)
    assert _one_line(error.value).startswith(
        "CaptionSourceError: quality.extra_sources[blip]: ")
    assert "is not a Parquet table" in str(error.value)


def test_a_pool_the_filter_emptied_says_which_settings_to_change():
    from sail_pipeline.pipelines.quality.nodes import pretrain_tables
    from sail_pipeline.schema import StageSizeParams

    decisions = pd.DataFrame({"id": ["a"], "source": ["recaption"], "kept": [False]})
    candidates = pd.DataFrame({"id": ["a"], "source": ["recaption"], "caption": ["x"]})
    manifest = pd.DataFrame({"id": ["a"], "image": [b""]})
    with pytest.raises(UserError) as error:
        pretrain_tables(decisions, candidates, manifest, pd.DataFrame(), "recaption",
                        StageSizeParams(), 0)
    shown = _one_line(error.value)
    assert shown.startswith("EmptyPretrainPool: no caption of source 'recaption'")
    assert "loosen the rule that rejected them in quality.filter" in shown
    assert "set pretrain.caption_source to another source" in shown


def test_a_folder_that_is_not_a_clip_model_names_the_setting(tmp_path):
    from sail_pipeline.quality.clip import ClipScorer

    with pytest.raises(UserError) as error:
        ClipScorer.load(tmp_path)
    shown = _one_line(error.value)
    assert shown.startswith(f"NotAClipDirectory: {tmp_path} is not a CLIP directory")
    assert "give quality.clip.path a local Hugging Face CLIPModel directory" in shown
