"""The caption filter and the signal cache: decisions, funnel, reasons, recomputation."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pydantic import ValidationError

from sail_pipeline.quality.filter import decide
from sail_pipeline.quality.signals import ImageBatch, SignalGroup, TextBatch, compute_signals
from sail_pipeline.schema import ExecutorParams
from sail_pipeline.schema.quality import SIGNALS, FilterParams, QualityParams
from tests.kills import kill_points, kill_when


def _signals(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"id": [f"i{k}" for k in range(n)], "source": ["recaption"] * n,
            "text_error": [None] * n, "image_error": [None] * n, "judge_error": [None] * n}
    base |= {name: np.full(n, np.nan) for name in SIGNALS}
    base |= {"words": np.full(n, 10.0), "judge_vir": np.full(n, 4.0),
             "judge_ita": np.full(n, 4.0)}
    return pd.DataFrame(base | columns)


def test_every_failed_rule_is_a_reason_and_the_funnel_counts_each():
    signals = _signals(words=[10.0, 1.0, 10.0, np.nan, 0.0],
                       judge_vir=[4.0, 4.0, 2.0, np.nan, 1.0],
                       judge_ita=[5.0, 5.0, 3.0, np.nan, 1.0],
                       text_error=[None, None, None, "missing_caption", None],
                       judge_error=[None, None, None, "missing_caption", "malformed: 'five'"])
    params = FilterParams(thresholds={"words": {"min": 4}})
    decisions, rejected, funnel = decide(signals, params)
    assert list(decisions["kept"]) == [True, False, False, False, False]
    reasons = dict(zip(decisions["id"], decisions["reasons"], strict=True))
    assert reasons["i1"] == "words<4"
    assert reasons["i2"] == "judge_vir<3"
    assert reasons["i3"].startswith("missing_caption") and "words<4" in reasons["i3"]
    assert "judge: malformed: 'five'" in reasons["i4"] and "judge_vir<3" in reasons["i4"]
    counts = funnel.set_index("step")["count"]
    assert counts["input"] == 5 and counts["kept"] == 1 and counts["rejected"] == 4
    assert counts["words<4"] == 3 and counts["judge"] == 1 and counts["too_long"] == 0
    assert list(rejected["id"]) == ["i1", "i2", "i3", "i4"]


def test_filter_off_still_rejects_what_cannot_be_used():
    signals = _signals(words=[1.0, 10.0], text_error=[None, "not_utf8"],
                       judge_vir=[1.0, 1.0])
    decisions, _, _ = decide(signals, FilterParams(enabled=False))
    assert list(decisions["kept"]) == [True, False]
    assert decisions["reasons"][1] == "not_utf8"


def test_top_fraction_ranks_within_each_source_after_the_other_rules():
    signals = _signals(clip_score=[10.0, 40.0, 30.0, 20.0, 50.0, np.nan],
                       words=[10.0, 10.0, 10.0, 10.0, 1.0, 10.0])
    signals["source"] = ["a", "a", "a", "a", "a", "b"]
    params = FilterParams(thresholds={"words": {"min": 4}}, judge_min_score=None,
                          top_fraction={"signal": "clip_score", "keep": 0.5})
    decisions, _, _ = decide(signals, params)
    # Source a: four rows pass `words`; the top half by CLIP score are 40 and 30.
    assert list(decisions["kept"]) == [False, True, True, False, False, True]
    assert decisions["reasons"][0] == "not_top_0.5_clip_score"


def test_bad_filter_settings_fail_naming_the_key():
    with pytest.raises(ValidationError, match="unknown signal"):
        FilterParams(thresholds={"clip": {"min": 20}})
    with pytest.raises(ValidationError, match="min, max or both"):
        FilterParams(thresholds={"words": {}})
    with pytest.raises(ValidationError, match="unknown caption source"):
        QualityParams(sources=["alt_text", "blip"])
    with pytest.raises(ValidationError, match=r"\['image_gain'\], whose signal group is turned off"):
        QualityParams(likelihood={"enabled": False},
                      filter={"thresholds": {"image_gain": {"min": 0}}})


def _png(colour: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (colour, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_signals_are_cached_by_id_and_caption(tmp_path, monkeypatch):
    candidates = pd.DataFrame({
        "id": ["a", "b", "a"], "source": ["alt_text", "alt_text", "reference"],
        "caption": ["a red square", b"\xff\xfe", "A red square on white."],
        "image": [_png(200), b"not an image", _png(200)], "ground_truth": [None] * 3})
    groups = [SignalGroup("text", TextBatch, "v1", {"tokenizer_dir": None, "max_chars": 100}),
              SignalGroup("image", ImageBatch, "v1", per_image=True)]
    first = compute_signals(candidates, groups, tmp_path, ExecutorParams())
    assert list(first["words"].fillna(-1)) == [3.0, -1.0, 5.0]
    assert first["text_error"][1] == "not_utf8" and first["image_error"][1].startswith(
        "undecodable")
    calls = []
    original = TextBatch.__call__
    monkeypatch.setattr(TextBatch, "__call__",
                        lambda self, batch: calls.append(len(batch)) or original(self, batch))
    more = pd.concat([candidates, candidates.iloc[[0]].assign(caption="a blue square")],
                     ignore_index=True)
    second = compute_signals(more, groups, tmp_path, ExecutorParams())
    assert calls == [1]  # only the new caption
    pd.testing.assert_frame_equal(second.iloc[:3], first)


def test_a_users_caption_column_joins_the_sources_and_a_bad_one_is_named(tmp_path):
    from sail_pipeline.pipelines.quality.nodes import caption_candidates

    manifest = pd.DataFrame({"id": ["a", "b"], "image": [b"", b""], "alt_text": ["x", None]})
    captions = pd.DataFrame({"id": ["a"], "caption": ["A red square."]})
    pd.DataFrame({"key": ["a", "b", "zzz"], "text": ["blip a", "blip b", "not in the pool"]}
                 ).to_parquet(tmp_path / "blip.parquet")
    params = QualityParams(sources=["alt_text", "reference", "blip"], extra_sources=[
        {"name": "blip", "path": tmp_path / "blip.parquet", "id_column": "key",
         "caption_column": "text"}])
    candidates = caption_candidates(manifest, captions, captions, params)
    assert list(candidates["source"]) == ["alt_text", "alt_text", "reference", "blip", "blip"]
    assert list(candidates.loc[candidates["source"] == "blip", "caption"]) == ["blip a",
                                                                               "blip b"]
    missing = params.model_copy(update={"extra_sources": [
        params.extra_sources[0].model_copy(update={"caption_column": "caption"})]})
    with pytest.raises(ValueError, match=r"quality.extra_sources\[blip\].*lacks columns"):
        caption_candidates(manifest, captions, captions, missing)


KILLED_SCORING = """
import logging, sys, time
import pandas as pd
from sail_pipeline.quality import signals
from sail_pipeline.quality.signals import SignalGroup, TextBatch, compute_signals
from sail_pipeline.schema import ExecutorParams

class SlowText(TextBatch):
    def __call__(self, batch):
        time.sleep(0.05)  # a judge over an API: slow per batch
        return super().__call__(batch)

logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
signals.FLUSH_ROWS = 20
candidates = pd.read_parquet(sys.argv[1])
group = SignalGroup("text", SlowText, "v1", {"tokenizer_dir": None, "max_chars": 100},
                    batch_size=10)
compute_signals(candidates, [group], sys.argv[2], ExecutorParams())
"""


@pytest.mark.slow
@pytest.mark.faults
def test_a_killed_scoring_run_keeps_what_it_cached_and_the_rerun_does_the_rest(
        tmp_path, caplog):
    import logging
    import subprocess
    import sys

    from sail_pipeline.quality import signals

    candidates = pd.DataFrame({"id": [f"c{i}" for i in range(400)], "source": "recaption",
                               "caption": [f"a caption with {i} words in it" for i in range(400)],
                               "image": [None] * 400, "ground_truth": [None] * 400})
    candidates.to_parquet(tmp_path / "candidates.parquet")
    (tmp_path / "run.py").write_text(KILLED_SCORING)
    cache = tmp_path / "cache"

    def parts() -> list[Path]:
        return list(cache.glob("text-*/part-*.parquet"))

    def cached() -> int:
        return sum(len(pd.read_parquet(p)) for p in parts())

    # Killed three times, once a drawn number of parts (20 rows each, of 20) is cached.
    kept = 0
    for start, target in enumerate(kill_points(seed=56, count=3, low=1, high=15)):
        log = tmp_path / f"scoring-{start}.log"
        with log.open("w") as out:
            process = subprocess.Popen([sys.executable, str(tmp_path / "run.py"),
                                        str(tmp_path / "candidates.parquet"), str(cache)],
                                       stdout=out, stderr=subprocess.STDOUT)
            kill_when(process, lambda n=target: len(parts()) >= n, f"{target} parts",
                      timeout_s=120)
        # Each start computed only what no earlier one had cached, and said so.
        if "computing" in log.read_text():
            assert f"400 keys, {kept} cached, computing {400 - kept}" in log.read_text()
        assert cached() >= kept
        kept = cached()
    [folder] = cache.glob("text-*")
    (folder / ".part-00099-abcdef.tmp").write_bytes(b"PAR1 half a part")  # as if mid-write
    assert 20 <= kept < 400

    calls = []
    original = TextBatch.__call__
    group = SignalGroup("text", TextBatch, "v1", {"tokenizer_dir": None, "max_chars": 100},
                        batch_size=10)
    with caplog.at_level(logging.INFO, logger=signals.__name__):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(TextBatch, "__call__",
                          lambda self, batch: calls.append(len(batch)) or original(self, batch))
            resumed = compute_signals(candidates, [group], cache, ExecutorParams())
    assert sum(calls) == 400 - kept  # nothing cached is computed again
    assert f"400 keys, {kept} cached, computing {400 - kept}" in caplog.text
    assert not list(folder.glob(".part-*.tmp"))
    whole = compute_signals(candidates, [group], tmp_path / "uninterrupted", ExecutorParams())
    pd.testing.assert_frame_equal(resumed, whole)
