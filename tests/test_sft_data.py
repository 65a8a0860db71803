"""Candidate SFT sets, their validation, users' sets and the stage mixtures."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sail_pipeline.evaluation.world_metrics import is_correct
from sail_pipeline.modeling.preset_specs import get_preset
from sail_pipeline.modeling.processor import VLProcessor
from sail_pipeline.schema import (
    CANDIDATES,
    HARMFUL_CANDIDATES,
    SFT_STAGES,
    CandidateSetParams,
    InvalidParameters,
    MixtureParams,
    WorldParams,
)
from sail_pipeline.sft_data.candidates import BUILDERS, WorldSplit, build_candidate
from sail_pipeline.sft_data.mixture import EmptySource, draw, mix, row_counts
from sail_pipeline.sft_data.user_sets import CandidateSetError, held_out, read_user_set
from sail_pipeline.sft_data.validate import (
    Rejection,
    conversation_problem,
    processor_encoder,
    validate_conversations,
)
from tests.test_pipelines import micro_params


def _split(world, split: str) -> WorldSplit:
    tables = {name: getattr(world, name) for name in ("scenes", "vqa", "conversations", "probes")}
    return WorldSplit(**{k: v[v["split"] == split].reset_index(drop=True)
                         for k, v in tables.items()}, world=WorldParams(n_train=120,
                                                                        n_benchmark=20, seed=3))


@pytest.fixture(scope="module")
def processor(world_tokenizer) -> VLProcessor:
    return VLProcessor(world_tokenizer, get_preset("tiny").image_settings())


def _validate(table: pd.DataFrame, processor: VLProcessor, max_seq_len: int = 256):
    return validate_conversations(table, processor_encoder(processor), processor.num_tiles,
                                  max_seq_len)


def test_every_declared_set_has_a_builder_and_every_real_set_validates_clean(
        small_world, processor):
    assert set(BUILDERS) == set(CANDIDATES)
    train = _split(small_world, "train")
    for name in CANDIDATES:
        table = build_candidate(name, train, seed=0)
        kept, rejected = _validate(table, processor)
        assert len(table) > 0, name
        assert rejected.empty, (name, rejected["reason"].value_counts().to_dict())
        assert kept["id"].is_unique, name
        # n_tokens is the trainer's own encoding of the row, not a length estimate.
        row = kept.iloc[0]
        n_tiles = processor.num_tiles(64, 64) if row["image"] is not None else 0
        assert row["n_tokens"] == len(processor.encode(json.loads(row["messages"]),
                                                       n_tiles).input_ids)


def test_text_only_has_no_image_and_counting_asks_arithmetic(small_world):
    train = _split(small_world, "train")
    text = build_candidate("text_only", train, 0)
    assert text["image"].isna().all()
    assert not any("<image>" in m for m in text["messages"])
    counting = build_candidate("counting", train, 0)
    arithmetic = counting[counting["id"].str.endswith("-arith")]
    assert len(arithmetic) == len(train.scenes)
    truth = {s: json.loads(g)["count"] if "count" in json.loads(g) else None
             for s, g in zip(train.scenes["id"], train.scenes["ground_truth"], strict=True)}
    from sail_pipeline.world import NUMBER_WORDS

    for row_id, messages in zip(arithmetic["id"], arithmetic["messages"], strict=True):
        question, answer = (m["content"] for m in json.loads(messages))
        count = truth[row_id.removesuffix("-arith")]
        if count is None:
            continue
        expected = count + 1 if "added" in question else count - 1
        assert answer == NUMBER_WORDS[expected]


def test_planted_harmful_sets_are_wrong_in_the_way_they_declare(small_world):
    train = _split(small_world, "train")
    assert set(HARMFUL_CANDIDATES) == {"wrong_answers", "other_image", "wrong_format"}
    vqa = train.vqa.set_index("id")
    images = train.scenes.set_index("id")["image"]

    wrong = build_candidate("wrong_answers", train, 0)
    for row_id, messages in zip(wrong["id"], wrong["messages"], strict=True):
        assert json.loads(messages)[1]["content"] != vqa.loc[row_id, "answer"]

    other = build_candidate("other_image", train, 0)
    for row_id, image in zip(other["id"], other["image"], strict=True):
        assert image != images.loc[vqa.loc[row_id, "scene_id"]]

    rambling = build_candidate("wrong_format", train, 0)
    for row_id, messages in zip(rambling["id"], rambling["messages"], strict=True):
        reply = json.loads(messages)[1]["content"]
        truth = vqa.loc[row_id, "answer"]
        assert truth in reply and not is_correct(reply, truth)  # right fact, scored wrong


def _png(size=(64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, format="PNG")
    return buffer.getvalue()


def _row(row_id, messages, image=None) -> dict:
    return {"id": row_id, "image": image,
            "messages": messages if isinstance(messages, str) else json.dumps(messages)}


def _turn(role, content):
    return {"role": role, "content": content}


def test_each_broken_conversation_is_rejected_with_its_reason(processor):
    good = [_turn("user", "<image>\nWhat colour? Answer with one word."),
            _turn("assistant", "red")]
    long_answer = " ".join(["red"] * 400)
    rows = [
        _row("ok", good, _png()),
        _row("ok", good, _png()),                                          # duplicate id
        _row("system_ok", [_turn("system", "Be brief."), *good], _png()),
        _row("text_ok", [_turn("user", "Is red a colour?"), _turn("assistant", "yes")]),
        _row("not_json", "{not json"),
        _row("not_a_list", {"role": "user"}),
        _row("no_content", [{"role": "user"}]),
        _row("assistant_first", [_turn("assistant", "hi"), _turn("user", "<image>\nhi")],
             _png()),
        _row("two_users", [_turn("user", "<image>\na"), _turn("user", "b"),
                           _turn("assistant", "c")], _png()),
        _row("ends_with_user", [*good, _turn("user", "and?")], _png()),
        _row("empty_reply", [good[0], _turn("assistant", "  ")], _png()),
        _row("no_image", good),
        _row("unreferenced", [_turn("user", "What colour?"), _turn("assistant", "red")], _png()),
        _row("twice", [_turn("user", "<image>\n<image>\nWhat?"), _turn("assistant", "red")],
             _png()),
        _row("in_reply", [_turn("user", "What?"), _turn("assistant", "<image> red")], _png()),
        _row("broken_png", good, b"\x89PNG\r\n\x1a\n not really"),
        _row("too_long", [good[0], _turn("assistant", long_answer)], _png()),
    ]
    kept, rejected = _validate(pd.DataFrame(rows), processor, max_seq_len=256)
    assert sorted(kept["id"]) == ["ok", "system_ok", "text_ok"]
    reasons = dict(zip(rejected["id"], rejected["reason"], strict=True))
    assert reasons == {
        "ok": "duplicate_id", "not_json": "messages_malformed",
        "not_a_list": "messages_malformed", "no_content": "messages_malformed",
        "assistant_first": "role_order", "two_users": "role_order",
        "ends_with_user": "role_order", "empty_reply": "empty_assistant_turn",
        "no_image": "image_missing", "unreferenced": "image_not_referenced",
        "twice": "image_placeholder_misplaced", "in_reply": "image_placeholder_misplaced",
        "broken_png": "image_undecodable", "too_long": "longer_than_max_seq_len",
    }
    assert len(kept) + len(rejected) == len(rows)  # every row accounted for


def test_conversation_problem_accepts_a_system_turn_and_multi_turn():
    turns = [_turn("system", "s"), _turn("user", "a"), _turn("assistant", "b"),
             _turn("user", "c"), _turn("assistant", "d")]
    assert conversation_problem(turns) is None
    assert conversation_problem([]) == Rejection.MESSAGES_MALFORMED


def test_a_llava_json_set_reads_kept_rows_and_rejects_broken_entries(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images/a.png").write_bytes(_png())
    entries = [
        {"id": "a", "image": "a.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "red"}]},
        {"id": "text", "conversations": [{"from": "human", "value": "Hi?"},
                                         {"from": "gpt", "value": "Hello."}]},
        {"id": "gone", "image": "missing.png", "conversations": [
            {"from": "human", "value": "<image>\n?"}, {"from": "gpt", "value": "x"}]},
        {"id": "robot", "conversations": [{"from": "robot", "value": "?"}]},
        {"id": "bad_turn", "conversations": [{"from": "human"}]},
        "not an entry",
    ]
    path = tmp_path / "set.json"
    path.write_text(json.dumps(entries))
    rows, rejected = read_user_set("mine", CandidateSetParams(path=str(path),
                                                             image_folder=str(tmp_path / "images")))
    assert list(rows["id"]) == ["a", "text"]
    assert rows.iloc[0]["image"] == (tmp_path / "images/a.png").read_bytes()
    assert json.loads(rows.iloc[0]["messages"])[1] == {"role": "assistant", "content": "red"}
    assert dict(zip(rejected["id"], rejected["reason"], strict=True)) == {
        "gone": "image_missing", "robot": "role_unknown", "bad_turn": "messages_malformed",
        "5": "unreadable_entry"}


def test_a_parquet_set_reads_and_a_bad_file_names_itself(tmp_path):
    table = pd.DataFrame({"id": [1, 2], "image": [_png(), None],
                          "messages": [json.dumps([_turn("user", "<image>\nq"),
                                                   _turn("assistant", "a")]),
                                       json.dumps([_turn("user", "q"), _turn("assistant", "a")])]})
    table.to_parquet(tmp_path / "set.parquet")
    rows, rejected = read_user_set("mine", CandidateSetParams(path=str(tmp_path / "set.parquet")))
    assert list(rows["id"]) == ["1", "2"] and rejected.empty
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(CandidateSetError, match="sft.candidates.mine.*bad.parquet"):
        read_user_set("mine", CandidateSetParams(path=str(tmp_path / "bad.parquet")))
    pd.DataFrame({"id": [1]}).to_parquet(tmp_path / "nomessages.parquet")
    with pytest.raises(CandidateSetError, match="lacks column.*messages"):
        read_user_set("mine", CandidateSetParams(path=str(tmp_path / "nomessages.parquet")))


def test_held_out_rows_of_a_user_set_are_about_one_in_twenty_and_stable():
    ids = pd.Series([f"row-{i}" for i in range(4000)])
    held = held_out(ids)
    assert 150 < held.sum() < 250
    assert held_out(ids.iloc[::-1]).sort_index().equals(held)  # by id, not by position


@pytest.mark.parametrize(("size", "proportions"), [
    (10, {"a": 0.5, "b": 0.5}), (7, {"a": 0.37, "b": 0.43, "c": 0.07, "d": 0.13}),
    (1, {"a": 0.6, "b": 0.4}), (60000, {"a": 0.45, "b": 0.25, "c": 0.3})])
def test_row_counts_sum_to_the_size_and_follow_the_proportions(size, proportions):
    counts = row_counts(size, proportions)
    assert sum(counts.values()) == size
    for name, share in proportions.items():
        assert abs(counts[name] - size * share) < 1


def _table(prefix: str, n: int) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"{prefix}{i}" for i in range(n)], "image": [None] * n,
                         "messages": ["[]"] * n, "n_tokens": np.arange(n) % 50 + 10})


def test_a_small_source_repeats_whole_and_says_so():
    drawn = draw("s", _table("r", 4), 10, np.random.default_rng(0))
    assert len(drawn) == 10 and drawn["id"].is_unique
    assert drawn["id"].str.replace(r"#\d+$", "", regex=True).value_counts().max() == 3


def test_mixtures_are_reproducible_and_a_new_source_leaves_the_others_rows():
    tables = {"a": _table("a", 300), "b": _table("b", 300), "c": _table("c", 300)}
    groups = {"a": "general", "b": "ocr", "c": "text"}
    two = MixtureParams(size=100, sources={"a": 0.5, "b": 0.5})
    first, lines = mix("knowledge", "train", two, 100, tables, groups, 256, seed=0)
    again, _ = mix("knowledge", "train", two, 100, tables, groups, 256, seed=0)
    other, _ = mix("knowledge", "train", two, 100, tables, groups, 256, seed=1)
    assert first.equals(again) and not first.equals(other)
    assert [(line.source, line.rows, line.repeated) for line in lines] == [("a", 50, 0),
                                                                          ("b", 50, 0)]
    # A bigger mixture with a third source: a and b keep drawing from their own streams.
    three = MixtureParams(size=150, sources={"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    bigger, _ = mix("knowledge", "train", three, 150, tables, groups, 256, seed=0)
    assert len(bigger) == 150 and set(bigger["source"]) == {"a", "b", "c"}


def test_a_mixture_leaves_out_rows_its_stage_cannot_hold_and_fails_on_an_empty_source():
    tables = {"a": _table("a", 100), "b": _table("b", 100)}
    groups = {"a": "general", "b": "general"}
    mixture = MixtureParams(size=40, sources={"a": 0.5, "b": 0.5})
    rows, lines = mix("instruction", "train", mixture, 40, tables, groups, 30, seed=0)
    assert rows["n_tokens"].max() <= 30
    assert lines[0].too_long == (tables["a"]["n_tokens"] > 30).sum()
    with pytest.raises(EmptySource, match="sft.mixtures.instruction.sources.a.*max_seq_len 5"):
        mix("instruction", "train", mixture, 40, tables, groups, 5, seed=0)


def test_bad_sft_configuration_fails_at_start_naming_the_key(tmp_path):
    with pytest.raises(InvalidParameters, match=r"sft.mixtures.knowledge.sources.*sum to 1.2, not 1"):
        micro_params(sft={"mixtures": {"knowledge": {"sources": {"probes": 0.5,
                                                                 "general_vqa": 0.4}}}})
    base = micro_params().sft.mixtures.knowledge.sources
    only = {name: None for name in base}
    with pytest.raises(InvalidParameters, match=r"unknown candidate set 'nope'"):
        micro_params(sft={"mixtures": {"knowledge": {"sources": {**only, "nope": 1.0}}}})
    # `null` leaves a base source out of an override.
    replaced = micro_params(sft={"mixtures": {"knowledge": {"sources": {**only, "probes": 1.0}}}})
    assert replaced.sft.mixtures.knowledge.sources == {"probes": 1.0}
    with pytest.raises(InvalidParameters, match=r"must be > 0"):
        micro_params(sft={"mixtures": {"knowledge": {"sources": {**only, "probes": 1.0,
                                                                 "general_vqa": 0.0}}}})
    with pytest.raises(InvalidParameters, match=r"'probes' is a built-in set"):
        micro_params(sft={"candidates": {"probes": {"path": "x.json"}}})
    with pytest.raises(InvalidParameters, match=r"all_in_one.*all be `tokens` or all `steps`"):
        micro_params(sft={"schedule": "all_in_one", "knowledge": {"steps": None, "tokens": 900}})
    steps = micro_params(sft={"schedule": "all_in_one"}).sft  # micro's stages all count steps
    assert steps.all_in_one().steps == sum(getattr(steps, s).steps for s in SFT_STAGES)
    from sail_pipeline.glue.validation import validate_project
    from sail_pipeline.schema import deep_merge

    tree = micro_params().model_dump()
    tree = deep_merge(tree, {"sft": {"candidates": {"mine": {"path": str(tmp_path / "gone.json")},
                                                    "odd": {"path": str(Path(__file__))}}}})
    with pytest.raises(InvalidParameters) as error:
        validate_project(tree)
    assert "sft.candidates.mine.path" in str(error.value) and "gone.json" in str(error.value)
    assert "sft.candidates.odd.format" in str(error.value)
