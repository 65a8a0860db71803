"""The world's benchmark-format tasks: detailed caption, POPE, MME pairs, MMBench by letter.

The probes' data (world/probes.py), the benchmark rows (recipe_data.benchmark_table), the
scorers and aggregations (evaluation/world_metrics.py) and a full lmms-eval run over all of
them with a scripted model.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from sail_pipeline import recipe_data
from sail_pipeline.evaluation import lmms_model, runner
from sail_pipeline.evaluation import world_metrics as wm
from sail_pipeline.evaluation.tasks import chance_levels
from sail_pipeline.world import WorldParams

NEW_TASKS = ["world_caption", "world_pope", "world_mme", "world_mmbench"]


def _split(world, name: str, split: str) -> pd.DataFrame:
    table = getattr(world, name)
    return table[table["split"] == split].reset_index(drop=True)


@pytest.fixture(scope="module")
def bench(small_world) -> pd.DataFrame:
    return recipe_data.benchmark_table(
        _split(small_world, "scenes", "benchmark"), _split(small_world, "vqa", "benchmark"),
        _split(small_world, "probes", "benchmark"), WorldParams())


def _truth(world, scene_id: str) -> dict:
    row = world.scenes.set_index("id").loc[scene_id]
    return json.loads(row["ground_truth"])


# --- the probes' data --------------------------------------------------------------------------


def test_pope_pairs_ask_a_present_and_an_absent_object(small_world):
    probes = small_world.probes[small_world.probes["question_type"] == "pope"]
    for scene_id, pair in probes.groupby("scene_id"):
        truth = _truth(small_world, scene_id)
        assert sorted(pair["answer"]) == ["no", "yes"]
        present = pair[pair["answer"] == "yes"]["question"].iloc[0]
        absent = pair[pair["answer"] == "no"]["question"].iloc[0]
        assert f"a {truth['colour']} {truth['kind']} " in present
        # The absent object keeps one of the two attributes (POPE's adversarial negatives).
        kept = [truth["colour"] in absent, truth["kind"] in absent]
        assert sum(kept) == 1, absent


def test_mme_pairs_share_a_category_and_differ_in_answer(small_world):
    probes = small_world.probes[small_world.probes["question_type"] == "mme"]
    for _, pair in probes.groupby("group_id"):
        assert len(pair) == 2 and sorted(pair["answer"]) == ["no", "yes"]
        assert pair["category"].nunique() == 1
        assert pair["category"].iloc[0] in ("count", "colour", "position", "ocr")
        assert all(q.endswith("Please answer yes or no.") for q in pair["question"])
    assert probes["category"].nunique() >= 3


def test_mmbench_rotations_put_the_answer_under_every_letter(small_world):
    probes = small_world.probes[small_world.probes["question_type"] == "mmbench"]
    bench = probes[probes["split"] == "benchmark"]
    for _, group in bench.groupby("group_id"):
        options = [json.loads(c) for c in group["choices"]]
        k = len(options[0])
        assert len(group) == k and 2 <= k <= 4
        assert sorted(group["answer"]) == list("ABCD"[:k])
        truths = {opts["ABCD".index(a)] for opts, a in zip(options, group["answer"], strict=True)}
        assert len(truths) == 1
        for opts, question in zip(options, group["question"], strict=True):
            assert [line[3:] for line in question.splitlines()[1:-1]] == opts
    # Training scenes see one ordering; the rotations are an evaluation protocol.
    train = probes[probes["split"] == "train"]
    assert train["group_id"].is_unique


def test_probe_letters_are_not_biased(small_world):
    train = small_world.probes[(small_world.probes["question_type"] == "mmbench")
                               & (small_world.probes["split"] == "train")]
    letters = Counter(train["answer"])
    assert set(letters) == set("ABCD") and max(letters.values()) < 0.45 * len(train)


def test_benchmark_table_holds_every_task(bench, small_world):
    assert set(bench["question_type"]) >= {"count", "colour", "shape", "caption", "pope", "mme",
                                           "mmbench"}
    assert list(bench.columns) == recipe_data.BENCHMARK_COLUMNS
    assert bench["id"].is_unique
    captions = bench[bench["question_type"] == "caption"]
    assert len(captions) == (small_world.scenes["split"] == "benchmark").sum()
    assert (captions["question"] == recipe_data.CAPTION_BENCHMARK_PROMPT).all()


def test_knowledge_stage_trains_the_formats(small_world):
    tables = recipe_data.stage_tables(
        _split(small_world, "scenes", "train"), _split(small_world, "vqa", "train"),
        _split(small_world, "conversations", "train"), recipe_data.StageSizeParams(), seed=0,
        probes=_split(small_world, "probes", "train"))
    ids = tables["knowledge"]["id"]
    assert ids.str.contains("-pope-").any() and ids.str.contains("-mmbench-").any()
    replayed = tables["preference"][~tables["preference"]["id"].str.endswith("-all")]
    assert replayed["id"].str.rsplit("-", n=2).str[0].is_unique  # one probe per scene
    assert len(replayed) == (small_world.scenes["split"] == "train").sum()
    assert set(replayed["id"].str.split("-").str[2]) == {"pope", "mme", "mmbench"}


# --- scorers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("reply", "parsed"), [
    ("Yes", "yes"), ("no.", "no"), ("No, there is not.", "no"), ("I think yes", "yes"),
    ("yes or no", "other"), ("maybe", "other"), ("", "other"),
])
def test_parse_yes_no(reply, parsed):
    assert wm.parse_yes_no(reply) == parsed


def test_pope_metrics_follow_the_confusion_matrix():
    items = [{"answer": a, "prediction": p} for a, p in
             [("yes", "yes"), ("yes", "no"), ("no", "yes"), ("no", "no"), ("no", "other")]]
    metrics = wm.pope_confusion(items)
    assert metrics == pytest.approx({"score": 0.5, "accuracy": 0.4, "precision": 0.5,
                                     "recall": 0.5, "yes_ratio": 0.4})


def test_mme_scores_acc_and_acc_plus_per_category():
    def item(category, group, correct):
        return {"category": category, "group": group, "correct": correct}

    items = [item("count", "a", True), item("count", "a", True),
             item("count", "b", True), item("count", "b", False),
             item("ocr", "c", False), item("ocr", "c", False)]
    # count: acc 3/4, acc+ 1/2 -> 125 of 200; ocr: 0 of 200.
    assert wm.mme_total(items) == pytest.approx(125.0)
    assert wm.mme_score(items) == pytest.approx((0.625 + 0.0) / 2)
    assert wm.mme_acc(items) == pytest.approx(0.5)
    assert wm.mme_acc_plus(items) == pytest.approx(1 / 3)


@pytest.mark.parametrize(("reply", "picked"), [
    ("B", "B"), ("(C)", "C"), ("D. yellow", "D"), ("A red one", "A"), ("green", "B"),
    ("A or B", None), ("E", None), ("red or green", None), ("", None),
])
def test_parse_letter(reply, picked):
    assert wm.parse_letter(reply, ["red", "green", "blue", "yellow"]) == picked


def test_caption_counts_reward_truth_and_punish_invented_facts():
    facts = {"kind": "circle", "count": "one", "colour": "red", "background": "white",
             "position": "left"}
    vocabulary = {"kind": ["circle", "square"], "count": ["one", "two"],
                  "colour": ["red", "blue"], "position": ["left", "center", "right"],
                  "background": ["white", "beige"], "text": ["cat"]}
    full = wm.caption_counts("There is one red circle on the left, on a white background.",
                             facts, vocabulary)
    assert full["object_hits"] == full["object_facts"] == 2
    assert full["attribute_hits"] == full["attribute_facts"] == 3
    wrong = wm.caption_counts('Two blue circles. The word "cat" is written.', facts, vocabulary)
    assert (wrong["object_hits"], wrong["object_mentions"], wrong["object_correct"]) == (1, 2, 1)
    assert (wrong["attribute_hits"], wrong["attribute_mentions"]) == (0, 2)
    assert wm.caption_f1([full]) == 1.0
    assert 0.0 < wm.caption_f1([wrong]) < 0.5
    assert wm.object_precision([wrong]) == 0.5


def test_reference_captions_score_perfectly_and_alt_text_does_not(bench, small_world):
    captions = bench[bench["question_type"] == "caption"].to_dict("records")
    reference = [wm.process_caption(row, [row["answer"]])["score"] for row in captions]
    assert wm.caption_f1(reference) == 1.0
    alt_text = small_world.scenes.set_index("id")["alt_text"]
    noisy = [wm.process_caption(row, [alt_text[row["scene_id"]]])["score"] for row in captions]
    assert wm.attribute_recall(noisy) < 0.5 and wm.caption_f1(noisy) < 0.8


def test_chance_levels_of_the_new_tasks(bench):
    levels = chance_levels(bench, ["caption", "pope", "mme", "mmbench"])
    assert "world_caption" not in levels  # free text: guessing has no meaning
    assert levels["world_pope"] == pytest.approx(0.5)
    assert levels["world_mme"] == pytest.approx(0.375)
    assert 1 / 256 <= levels["world_mmbench"] <= 1 / 27


# --- through lmms-eval -------------------------------------------------------------------------


class _ScriptedGenerator:
    """Answers from the benchmark's own rows, keyed by image pixels and prompt."""

    def __init__(self, bench: pd.DataFrame, reply) -> None:
        self.answers = {(self._key(row["image"]), row["question"]): row["answer"]
                        for row in bench.to_dict("records")}
        self.reply = reply

    @staticmethod
    def _key(image) -> bytes:
        if isinstance(image, bytes):
            with Image.open(io.BytesIO(image)) as opened:
                image = opened.convert("RGB")
        return image.tobytes()

    def generate(self, images, prompts, max_new_tokens=16):
        return [self.reply(prompt, self.answers[(self._key(image), prompt)])
                for image, prompt in zip(images, prompts, strict=True)]


def _run(monkeypatch, bench, tmp_path: Path, reply) -> runner.EvalReport:
    path = tmp_path / "benchmark.parquet"
    bench.to_parquet(path, index=False)
    generator = _ScriptedGenerator(bench, reply)
    monkeypatch.setattr(lmms_model, "load_generator", lambda *args, **kwargs: generator)
    return runner.run_world_suite(tmp_path, path, tmp_path / "eval",
                                  question_types=["count", *(t[6:] for t in NEW_TASKS)],
                                  batch_size=16)


def test_oracle_scores_every_new_task_perfectly(monkeypatch, bench, tmp_path):
    report = _run(monkeypatch, bench, tmp_path, lambda prompt, answer: answer)
    assert report.scores == {name: pytest.approx(1.0) for name in ["world_count", *NEW_TASKS]}
    assert report.details["world_mme"]["total"] == pytest.approx(
        200 * bench[bench["question_type"] == "mme"]["category"].nunique())
    assert report.details["world_pope"]["yes_ratio"] == pytest.approx(0.5)
    rows = [json.loads(line) for line in report.samples_path.read_text().splitlines()]
    captions = [row for row in rows if row["task"] == "world_caption"]
    assert captions and all(row["record"]["object_hits"] == 2 for row in captions)
    assert all(row["correct"] for row in rows if row["task"] != "world_caption")


def test_biased_model_is_caught_by_each_protocol(monkeypatch, bench, tmp_path):
    # Always "yes", always "A": what POPE's yes-ratio, MME's acc+ and CircularEval expose.
    report = _run(monkeypatch, bench, tmp_path,
                  lambda prompt, answer: "A" if prompt.endswith("directly.") else "yes")
    pope = report.details["world_pope"]
    assert pope["yes_ratio"] == 1.0 and pope["accuracy"] == pytest.approx(0.5)
    assert report.scores["world_pope"] == pytest.approx(2 / 3)  # recall 1, precision 1/2
    assert report.details["world_mme"]["acc"] == pytest.approx(0.5)
    assert report.details["world_mme"]["acc_plus"] == 0.0
    assert report.scores["world_mme"] == pytest.approx(0.25)
    assert report.scores["world_mmbench"] == 0.0
    assert 0.25 <= report.details["world_mmbench"]["accuracy"] <= 1 / 3
    assert report.scores["world_caption"] == 0.0
    assert "world_caption" not in report.chance


def test_caption_score_cli_scores_a_column_and_names_a_bad_one(small_world, tmp_path, capsys):
    from sail_pipeline.cli.caption_score import main
    from sail_pipeline.evaluation.caption_score import score_captions

    scenes = small_world.scenes
    assert score_captions(scenes, scenes["reference_caption"].tolist())["score"] == 1.0
    path = tmp_path / "scenes.parquet"
    scenes.to_parquet(path)
    main(["--scenes", str(path), "--column", "alt_text"])
    assert capsys.readouterr().out.startswith("alt_text on 20 benchmark scenes: score 0.")
    with pytest.raises(SystemExit):
        main(["--scenes", str(path), "--column", "recaption"])
    assert "no column 'recaption'" in capsys.readouterr().err
