"""Tests of the procedurally generated world."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from sail_pipeline.world import (
    ANSWER_INSTRUCTION,
    COLOURS,
    IMAGE_PLACEHOLDER,
    NUMBER_WORDS,
    SHAPE_KINDS,
    Scene,
    ShapeInstance,
    WorldParams,
    WorldTables,
    alt_text,
    chance_levels,
    check_feasible,
    conversation,
    decode_image,
    detailed_caption,
    generate_world,
    number_word,
    render,
    sample_scene,
    scene_signature,
    scene_streams,
    vqa_pairs,
)
from sail_pipeline.world.layout import MARGIN, band_height

SMALL = WorldParams(n_train=60, n_benchmark=20, text_probability=0.5)


@pytest.fixture(scope="module")
def world() -> WorldTables:
    return generate_world(SMALL)


def _scenes(tables: WorldTables) -> list[Scene]:
    return [Scene.from_dict(json.loads(gt)) for gt in tables.scenes["ground_truth"]]


def _sampled(cfg: WorldParams, n: int) -> list[Scene]:
    return [
        sample_scene(scene_streams(cfg.seed, "train", i).scene, cfg, f"train-{i:06d}")
        for i in range(n)
    ]


def _assert_tables_equal(a: WorldTables, b: WorldTables) -> None:
    for name in ("scenes", "vqa", "conversations", "probes"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))


# --- determinism -----------------------------------------------------------------------------


def test_same_config_gives_identical_tables(world: WorldTables) -> None:
    _assert_tables_equal(world, generate_world(SMALL))


def test_different_seed_gives_different_world(world: WorldTables) -> None:
    other = generate_world(SMALL.model_copy(update={"seed": 1}))
    assert list(other.scenes["id"]) == list(world.scenes["id"])
    assert list(other.scenes["image"]) != list(world.scenes["image"])
    assert list(other.scenes["ground_truth"]) != list(world.scenes["ground_truth"])


def test_scene_unchanged_when_n_train_grows() -> None:
    small = generate_world(WorldParams(n_train=8, n_benchmark=0))
    large = generate_world(WorldParams(n_train=16, n_benchmark=0))
    pd.testing.assert_frame_equal(small.scenes, large.scenes.iloc[:8])
    small_vqa = large.vqa[large.vqa["scene_id"].isin(small.scenes["id"])]
    pd.testing.assert_frame_equal(small.vqa, small_vqa)
    pd.testing.assert_frame_equal(small.conversations, large.conversations.iloc[:8])
    small_probes = large.probes[large.probes["scene_id"].isin(small.scenes["id"])]
    pd.testing.assert_frame_equal(small.probes, small_probes)


def test_render_is_pure(world: WorldTables) -> None:
    scene = _scenes(world)[0]
    assert render(scene, SMALL).tobytes() == render(scene, SMALL).tobytes()
    assert decode_image(world.scenes["image"].iloc[0]).tobytes() == render(scene, SMALL).tobytes()


# --- tables ----------------------------------------------------------------------------------


def test_tables_are_parquet_ready(world: WorldTables, tmp_path) -> None:
    allowed = (str, bytes, bool, int, float, np.integer, np.floating, np.bool_)
    for name in ("scenes", "vqa", "conversations", "probes"):
        frame = getattr(world, name)
        assert frame["id"].is_unique
        for column in frame.columns:
            assert all(isinstance(v, allowed) for v in frame[column]), (name, column)
        frame.to_parquet(tmp_path / f"{name}.parquet")
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / f"{name}.parquet"), frame, check_dtype=False
        )


def test_ids_and_splits(world: WorldTables) -> None:
    scenes = world.scenes
    assert list(scenes["split"]).count("train") == SMALL.n_train
    assert list(scenes["split"]).count("benchmark") == SMALL.n_benchmark
    assert scenes["id"].iloc[0] == "train-000000"
    assert scenes["id"].iloc[-1] == f"bench-{SMALL.n_benchmark - 1:06d}"
    assert (scenes["width"] == SMALL.image_size).all() and (scenes["height"] == 64).all()
    assert "train-000000-count-0" in set(world.vqa["id"])
    assert set(world.vqa["scene_id"]) == set(scenes["id"])
    assert set(world.conversations["scene_id"]) == set(scenes["id"])
    assert set(world.probes["scene_id"]) == set(scenes["id"])


def test_benchmark_is_disjoint_from_train_by_signature() -> None:
    # A world with few distinct scenes forces collisions, so the resampling path must run.
    cfg = WorldParams(
        shape_kinds=["circle"],
        colours=["red"],
        min_objects=1,
        max_objects=1,
        radius_min=10,
        radius_max=10,
        text_probability=0.0,
        n_train=300,
        n_benchmark=60,
    )
    tables = generate_world(cfg)
    scenes = _scenes(tables)
    train = {scene_signature(s) for s in scenes[: cfg.n_train]}
    bench = scenes[cfg.n_train :]
    assert all(scene_signature(s) not in train for s in bench)
    first_draws = [
        sample_scene(scene_streams(cfg.seed, "benchmark", i).scene, cfg, s.scene_id)
        for i, s in enumerate(bench)
    ]
    assert any(first != s for first, s in zip(first_draws, bench, strict=True)), (
        "no resample happened"
    )


def test_benchmark_and_train_streams_differ(world: WorldTables) -> None:
    scenes = _scenes(world)
    train = [scene_signature(s) for s in scenes[: SMALL.n_train]]
    bench = [scene_signature(s) for s in scenes[SMALL.n_train :]]
    assert train[: SMALL.n_benchmark] != bench


# --- scene geometry and pixels ---------------------------------------------------------------


def _shape_mask(scene: Scene, shape: ShapeInstance, cfg: WorldParams) -> np.ndarray:
    alone = Scene(scene.scene_id, scene.kind, scene.colour, (shape,), None, scene.background)
    pixels = np.asarray(render(alone, cfg))
    return np.all(pixels == COLOURS[scene.colour], axis=-1)


def test_shapes_in_bounds_and_not_overlapping() -> None:
    cfg = WorldParams(text_probability=0.5)
    size = cfg.image_size
    for scene in _sampled(cfg, 150):
        assert len({scene.kind, scene.colour}) == 2 and cfg.min_objects <= scene.count <= 3
        bottom = size - 1 - MARGIN - (band_height(size) if scene.text else 0)
        union = np.zeros((size, size), dtype=bool)
        for shape in scene.shapes:
            assert cfg.radius_min <= shape.radius <= cfg.radius_max
            mask = _shape_mask(scene, shape, cfg)
            ys, xs = np.nonzero(mask)
            assert xs.min() >= MARGIN and ys.min() >= MARGIN, scene
            assert xs.max() <= size - 1 - MARGIN and ys.max() <= bottom, scene
            grown = mask.copy()  # one pixel of dilation: shapes must not even touch
            grown[1:] |= mask[:-1]
            grown[:-1] |= mask[1:]
            grown[:, 1:] |= mask[:, :-1]
            grown[:, :-1] |= mask[:, 1:]
            assert not (grown & union).any(), scene
            union |= mask


def test_centre_pixel_has_theme_colour(world: WorldTables) -> None:
    for scene, png in zip(_scenes(world), world.scenes["image"], strict=True):
        pixels = np.asarray(decode_image(png))
        for shape in scene.shapes:
            assert tuple(pixels[shape.y, shape.x]) == COLOURS[scene.colour], scene


def test_background_is_light_and_not_flat(world: WorldTables) -> None:
    pixels = np.asarray(decode_image(world.scenes["image"].iloc[0])).astype(int)
    corner = pixels[:MARGIN, :MARGIN].reshape(-1, 3)
    assert corner.min() >= 190
    assert len({tuple(p) for p in pixels[0]}) > 1


def test_text_band_present_iff_has_text(world: WorldTables) -> None:
    band = band_height(SMALL.image_size)
    assert world.scenes["has_text"].any() and not world.scenes["has_text"].all()
    for scene, png, has_text in zip(
        _scenes(world), world.scenes["image"], world.scenes["has_text"], strict=True
    ):
        pixels = np.asarray(decode_image(png))
        dark = (pixels < 80).all(axis=-1)
        assert has_text == (scene.text is not None)
        assert bool(dark[-band:].any()) == has_text, scene.scene_id
        assert not dark[:-band].any()


def test_position_only_for_single_shapes() -> None:
    cfg = WorldParams()
    seen = set()
    for scene in _sampled(cfg, 120):
        if scene.count == 1:
            x = scene.shapes[0].x
            expected = "left" if x < 64 / 3 else "center" if x < 128 / 3 else "right"
            assert scene.position == expected
            seen.add(scene.position)
        else:
            assert scene.position is None
    assert seen == {"left", "center", "right"}


def test_scene_dict_round_trip(world: WorldTables) -> None:
    for scene in _scenes(world)[:10]:
        data = json.loads(json.dumps(scene.to_dict()))
        assert Scene.from_dict(data) == scene


# --- text --------------------------------------------------------------------------------------

_KIND_OF = {**{k: k for k in SHAPE_KINDS}, **{f"{k}s": k for k in SHAPE_KINDS}}


def _alt_text_is_wrong(text: str, scene: Scene) -> bool:
    for token in re.findall(r"[a-z]+|\d+", text.lower()):
        if token in COLOURS and token != scene.colour:
            return True
        if token in _KIND_OF and _KIND_OF[token] != scene.kind:
            return True
        count = (
            int(token)
            if token.isdigit()
            else (NUMBER_WORDS.index(token) if token in NUMBER_WORDS else None)
        )
        if count is not None and count != scene.count:
            return True
    return False


@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_alt_text_noise_rate(noise: float) -> None:
    cfg = WorldParams(alt_text_noise=noise)
    scenes = _sampled(cfg, 500)
    rng = np.random.default_rng(0)
    texts = [alt_text(s, rng, cfg) for s in scenes]
    wrong = np.mean([_alt_text_is_wrong(t, s) for t, s in zip(texts, scenes, strict=True)])
    assert noise - 0.08 <= wrong <= noise + 0.08
    assert all(t and len(t.split()) <= 12 for t in texts)


def test_detailed_caption_has_canonical_words(world: WorldTables) -> None:
    for scene, caption in zip(_scenes(world), world.scenes["reference_caption"], strict=True):
        assert caption == detailed_caption(scene)
        words = re.findall(r"[a-z]+", caption.lower())
        assert number_word(scene.count) in words
        assert scene.colour in words
        assert (scene.kind if scene.count == 1 else f"{scene.kind}s") in words
        if scene.text is not None:
            assert f'The word "{scene.text}" is written at the bottom.' in caption
        else:
            assert '"' not in caption
    assert world.scenes["reference_caption"].str.split().str[0].nunique() > 1


def test_vqa_answers_in_choices(world: WorldTables) -> None:
    vqa = world.vqa
    for row in vqa.itertuples():
        choices = json.loads(row.choices)
        assert row.answer in choices
        assert re.fullmatch(r"[a-z]+", row.answer)
        assert row.question.endswith(ANSWER_INSTRUCTION)
    assert set(vqa["question_type"]) == {"count", "colour", "shape", "position", "ocr"}
    assert vqa.groupby("question_type")["question"].nunique().min() > 1


def test_position_and_ocr_questions_only_when_defined(world: WorldTables) -> None:
    by_scene = world.vqa.groupby("scene_id")["question_type"].apply(set)
    for scene in _scenes(world):
        types = by_scene[scene.scene_id]
        assert {"count", "colour", "shape"} <= types
        assert ("position" in types) == (scene.count == 1)
        assert ("ocr" in types) == (scene.text is not None)


def test_vqa_pairs_default_choices() -> None:
    scene = _sampled(WorldParams(), 1)[0]
    pairs = vqa_pairs(scene, np.random.default_rng(0))
    count = next(p for p in pairs if p.question_type == "count")
    assert count.choices == ["one", "two", "three"] and count.answer == number_word(scene.count)


def test_conversation_format(world: WorldTables) -> None:
    for scene, raw in zip(_scenes(world), world.conversations["messages"], strict=True):
        messages = json.loads(raw)
        assert 4 <= len(messages) <= 6
        assert [m["role"] for m in messages] == ["user", "assistant"] * (len(messages) // 2)
        assert messages[0]["content"].startswith(f"{IMAGE_PLACEHOLDER}\n")
        assert all(IMAGE_PLACEHOLDER not in m["content"] for m in messages[1:])
        replies = [m["content"] for m in messages[1::2]]
        assert detailed_caption(scene) in replies
    scene = _scenes(world)[0]
    assert conversation(scene, np.random.default_rng(3)) == conversation(
        scene, np.random.default_rng(3)
    )


def test_chance_levels() -> None:
    levels = chance_levels(WorldParams())
    assert levels == pytest.approx(
        {"count": 1 / 3, "colour": 1 / 6, "shape": 1 / 3, "position": 1 / 3, "ocr": 1 / 8}
    )
    assert chance_levels(WorldParams(min_objects=2, max_objects=3))["count"] == 0.5


# --- config validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"image_size": 16}, "image_size"),
        ({"image_size": 32}, "radius_max"),
        ({"radius_max": 30}, "radius_max"),
        ({"radius_min": 12, "radius_max": 11}, "radius_max"),
        ({"min_objects": 3, "max_objects": 2}, "max_objects"),
        ({"max_objects": 6}, "max_objects"),
        ({"colours": ["red", "teal"]}, "colours"),
        ({"colours": []}, "colours"),
        ({"shape_kinds": ["hexagon"]}, "shape_kinds"),
        ({"ocr_words": ["cat", "red"]}, "ocr_words"),
        ({"ocr_words": ["Cat"]}, "ocr_words"),
        ({"text_probability": 1.5}, "text_probability"),
        ({"alt_text_noise": -0.1}, "alt_text_noise"),
        ({"bogus_key": 1}, "bogus_key"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict, field: str) -> None:
    # Values the schema can judge alone fail validation; whether shapes fit the image fails
    # the drawing check that generate_world and the run's start call (both ValueErrors).
    with pytest.raises(ValueError) as excinfo:
        check_feasible(WorldParams(**kwargs))
    assert field in str(excinfo.value)


def test_config_accepts_other_valid_settings() -> None:
    cfg = WorldParams(image_size=96, radius_min=12, radius_max=20, max_objects=4)
    scenes = _sampled(cfg, 20)
    assert all(s.image_size == 96 for s in scenes)
    assert render(scenes[0], cfg).size == (96, 96)
