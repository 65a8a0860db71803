import json

from sail_pipeline import recipe_data
from sail_pipeline.world import WorldParams


def _train(world, name):
    table = getattr(world, name)
    return table[table["split"] == "train"].reset_index(drop=True)


def _tables(world, sizes=None):
    return recipe_data.stage_tables(_train(world, "scenes"), _train(world, "vqa"),
                                    _train(world, "conversations"),
                                    sizes or recipe_data.StageSizeParams(), seed=0)


def test_every_stage_table_has_the_conversation_layout(small_world):
    for name, table in _tables(small_world).items():
        assert list(table.columns) == recipe_data.CONVERSATION_COLUMNS, name
        assert table["id"].is_unique, name
        for messages in table["messages"]:
            turns = json.loads(messages)
            assert turns[0]["role"] == "user" and turns[0]["content"].startswith("<image>\n")
            assert any(t["role"] == "assistant" for t in turns)


def test_pretraining_stages_caption_disjoint_scenes(small_world):
    tables = _tables(small_world)
    scene_of = lambda ids: {i.rsplit("-", 1)[0] for i in ids if i.endswith("-caption")}  # noqa: E731
    assert scene_of(tables["alignment"]["id"]).isdisjoint(scene_of(tables["advance"]["id"]))
    ocr = tables["advance"][tables["advance"]["id"].str.contains("-ocr-")]
    assert len(ocr) == (_train(small_world, "vqa")["question_type"] == "ocr").sum()


def test_stage_sizes_cap_rows(small_world):
    tables = _tables(small_world, recipe_data.StageSizeParams(alignment=10))
    assert len(tables["alignment"]) == 10


def test_hardest_set_asks_every_question_of_a_scene(small_world):
    tables = _tables(small_world)
    vqa = _train(small_world, "vqa")
    row = tables["preference"].iloc[0]
    scene_id = row["id"].removesuffix("-all")
    turns = json.loads(row["messages"])
    assert len(turns) == 2 * (vqa["scene_id"] == scene_id).sum()


def test_vision_labels_cover_every_attribute(small_world):
    table = recipe_data.vision_attribute_table(_train(small_world, "scenes"), WorldParams())
    assert table["label_colour"].between(0, 5).all() and table["label_count"].between(0, 2).all()
    assert set(table["label_word"]) > {0} and set(table["label_position"]) > {0}


def test_benchmark_and_text_corpus(small_world):
    bench = small_world.scenes[small_world.scenes["split"] == "benchmark"]
    bench_vqa = small_world.vqa[small_world.vqa["split"] == "benchmark"]
    bench_probes = small_world.probes[small_world.probes["split"] == "benchmark"]
    table = recipe_data.benchmark_table(bench, bench_vqa, bench_probes, WorldParams())
    assert {"count", "colour", "shape"} <= set(table["question_type"])
    assert table["image"].map(lambda b: b[:4] == b"\x89PNG").all()
    texts = recipe_data.lm_text_table(_train(small_world, "scenes"), _train(small_world, "vqa"),
                                      _train(small_world, "conversations"))
    assert texts["text"].str.contains("<|im_start|>assistant", regex=False).any()
    assert not texts["text"].str.contains("<image>", regex=False).any()
