"""Text and image quality signals: hand-computed values, robustness, batched == per-row."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter

from sail_pipeline.quality.image import image_signals, naive_image_signals
from sail_pipeline.quality.text import (
    MISSING_CAPTION,
    NOT_TEXT,
    NOT_UTF8,
    TOO_LONG,
    naive_text_signals,
    text_signals,
    unique_ngrams,
)


def one(caption, **kwargs) -> pd.Series:
    return text_signals([caption], **kwargs).iloc[0]


def test_ngram_diversity_by_hand():
    row = one("a a a b", repetition_n=2)
    assert row["words"] == 4
    assert row["distinct_1"] == 2 / 4
    assert row["distinct_2"] == 2 / 3  # (a a) twice, (a b)
    assert row["distinct_3"] == 1.0 and row["distinct_4"] == 1.0
    # 2-grams: (a a) occurs twice, so 2 of the 3 are repeats.
    assert row["word_repetition_ratio"] == 2 / 3
    assert row["lexical_richness"] == 2 / math.sqrt(4)
    assert one("a a a b")["word_repetition_ratio"] == 0.0  # no 5-gram at all


def test_repetition_ratio_catches_a_looping_caption():
    # 8 word 5-grams; "the cat sat on the" and "cat sat on the mat" occur twice each.
    row = one("The cat sat on the mat. The cat sat on the mat.")
    assert row["words"] == 12
    assert row["word_repetition_ratio"] == 4 / 8
    assert one("The cat sat on the mat and the dog slept.")["word_repetition_ratio"] == 0.0


def test_words_strip_punctuation_but_keep_digits():
    row = one("The (red) circle, don't... 3 circles!")
    assert row["words"] == 6  # the red circle don't 3 circles
    assert row["distinct_1"] == 1.0


def test_special_characters_by_hand():
    assert one("Hi, you!")["special_char_ratio"] == 2 / 8
    # € and the emoji (outside the Basic Multilingual Plane) are special; é is a letter.
    assert one("é€ 😀 ok!!")["special_char_ratio"] == 4 / 9
    assert one("   ")["special_char_ratio"] == 0.0


def test_parts_of_speech_from_the_pattern_tagger():
    row = one("The red circle is drawn on a blue background.")
    # circle, background / is, drawn / red, blue
    assert (row["nouns"], row["verbs"], row["adjectives"]) == (2, 2, 2)
    row = one("A small green square sits above two large yellow triangles.")
    assert (row["nouns"], row["verbs"], row["adjectives"]) == (2, 1, 4)


def test_empty_caption_is_valid_and_zero():
    row = one("")
    assert row["text_error"] is None
    signals = row.drop("text_error")
    assert (signals == 0).all(), signals


def test_unmeasurable_captions_get_nan_and_a_reason():
    table = text_signals([None, float("nan"), b"\xff\xfe caption", 42, "a\ud800b", b"ok caption"])
    assert table["text_error"].tolist() == [MISSING_CAPTION, MISSING_CAPTION, NOT_UTF8,
                                            NOT_TEXT, NOT_UTF8, None]
    assert table.iloc[:5].drop(columns="text_error").isna().all().all()
    assert table.iloc[5]["words"] == 2


def test_a_100kb_caption_is_measured_on_its_first_max_chars():
    # "aaa..." with no space is the tagger tokeniser's slow case: 10k chars take ~0.1 s,
    # 100k many seconds.
    table = text_signals(["word " * 20_000, "a" * 100_000], max_chars=10_000)
    assert table["text_error"].tolist() == [TOO_LONG, TOO_LONG]
    assert table["words"].tolist() == [2000, 1]
    assert table.loc[0, "distinct_1"] == 1 / 2000
    assert table.loc[0, "word_repetition_ratio"] == 1.0


def test_series_index_is_kept():
    table = text_signals(pd.Series(["a b", None], index=["x", "y"]))
    assert table.index.tolist() == ["x", "y"]


MIXED = [
    "The red circle is drawn on a blue background.",
    None,
    b"\xff\xfe not utf-8",
    "",
    "  \n ",
    "a a a b",
    "A caption that loops. " * 5000,  # 110 KB
    b"Bytes that are UTF-8: caf\xc3\xa9.",
    "Hello!! World? \"quoted\" it's e.g. fine; a/b 3.5 -- \u2014 end",
    "é€ 😀 ok!!\n\nSecond paragraph, same words same words same words same words.",
    float("nan"),
]


@pytest.fixture(scope="module")
def tokenizer(small_world):
    from sail_pipeline.modeling.tokenizer import train_tokenizer

    return train_tokenizer(small_world.scenes["reference_caption"], 300)


def test_batched_equals_naive_on_a_mixed_batch(small_world, tokenizer):
    captions = MIXED + list(small_world.scenes["reference_caption"]) \
        + list(small_world.scenes["alt_text"])
    for tok in (None, tokenizer, tokenizer.backend_tokenizer):
        batched = text_signals(captions, tok)
        naive = naive_text_signals(captions, tok)
        pd.testing.assert_frame_equal(batched, naive, check_exact=True)
    assert batched["tokens"].notna().sum() == len(captions) - 3  # None, not UTF-8, NaN
    assert list(batched.columns[:2]) == ["words", "tokens"]


def test_unique_ngrams_over_a_collection():
    captions = ["a b c", "a b d", None, "A, b!"]
    assert unique_ngrams(captions, 1) == 4
    assert unique_ngrams(captions, 2) == 3  # a b, b c, b d
    assert unique_ngrams(captions, 3) == 2
    assert unique_ngrams(["a b", "c d"], 2) == 2  # never "b c", across two captions
    assert unique_ngrams([], 2) == 0


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def checkerboard(side: int = 64, square: int = 8) -> np.ndarray:
    yy, xx = np.mgrid[:side, :side]
    return (((yy // square + xx // square) % 2) * 255).astype(np.uint8)


def test_image_signals_by_hand():
    dot = np.zeros((3, 3), dtype=np.uint8)
    dot[1, 1] = 255
    table = image_signals([png(dot), png(np.full((20, 60), 7, dtype=np.uint8)),
                           png(checkerboard())])
    # Laplacian (edges mirrored): -1020 at the dot, 255 at its 4 neighbours, 0 at corners.
    assert table.loc[0, "sharpness"] == (4 * 255**2 + 1020**2) / 9
    assert table.loc[0, "entropy"] == pytest.approx(-(8 / 9) * math.log2(8 / 9)
                                                    - (1 / 9) * math.log2(1 / 9))
    constant = table.loc[1]
    assert (constant["width"], constant["height"], constant["aspect_ratio"]) == (60, 20, 3.0)
    assert constant["sharpness"] == 0.0 and constant["entropy"] == 0.0
    assert table.loc[2, "entropy"] == 1.0  # half black, half white
    assert table["image_error"].isna().all()


def test_blur_lowers_sharpness():
    sharp = Image.fromarray(checkerboard()).convert("RGB")
    blurred = sharp.filter(ImageFilter.GaussianBlur(2))
    encoded = []
    for image in (sharp, blurred):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    table = image_signals(encoded)
    assert table.loc[0, "sharpness"] > 10 * table.loc[1, "sharpness"] > 0


def test_undecodable_images_are_recorded_not_raised(small_world):
    good = small_world.scenes["image"].iloc[0]
    table = image_signals([b"not an image", good[:200], None, good])
    errors = table["image_error"].tolist()
    assert errors[0].startswith("undecodable: ") and "0x" not in errors[0]
    assert errors[1].startswith("undecodable: ")
    assert errors[2] == "missing_image"
    assert errors[3] is None
    assert table.iloc[:3].drop(columns="image_error").isna().all().all()
    assert table.iloc[3]["width"] == 64


def test_batched_images_equal_naive(small_world):
    rng = np.random.default_rng(0)
    jpeg = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(jpeg, "JPEG")
    rgba = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (17, 5, 4), dtype=np.uint8)).save(rgba, "PNG")
    images = [*small_world.scenes["image"], jpeg.getvalue(), rgba.getvalue(), b"junk", None,
              png(checkerboard(33, 4)), png(np.zeros((1, 9), dtype=np.uint8))]
    batched = image_signals(images)
    naive = naive_image_signals(images)
    pd.testing.assert_frame_equal(batched, naive, check_exact=False, rtol=1e-12, atol=1e-12)
    assert batched["image_error"].notna().sum() == 2
