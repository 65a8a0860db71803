"""The captioner's training table, its parameters and the identity of its captions."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from pydantic import ValidationError

from sail_pipeline.captioning.captioner_data import captioner_tables
from sail_pipeline.captioning.factory import caption_identity, weights_digest
from sail_pipeline.captioning.recaptioning import build_prompt
from sail_pipeline.glue.validation import validate_project
from sail_pipeline.schema import (
    CaptionerParams,
    InvalidParameters,
    PoolRecaptionParams,
    validate_parameters,
)


def _pool(n: int) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"src:{i:03d}" for i in range(n)],
                         "image": [bytes([i]) * 4 for i in range(n)],
                         "alt_text": [None if i % 5 == 0 else f"alt {i}" for i in range(n)]})


def test_every_reference_image_gives_a_caption_row_and_a_recaption_row_if_it_has_alt_text():
    pool = _pool(40)
    reference = pd.DataFrame({"id": [*pool["id"], "src:missing"],
                              "caption": [f"caption {i}" for i in range(41)]})
    prompts = PoolRecaptionParams()
    tables = captioner_tables(reference, pool, prompts, eval_fraction=0.25, seed=3)

    rows = pd.concat([tables.train, tables.eval], ignore_index=True)
    assert list(rows.columns) == ["id", "image", "messages"]
    assert tables.skipped == {"not in the curation manifest": 1}
    with_alt = pool["alt_text"].notna().sum()
    assert len(rows) == 40 + with_alt and rows["id"].is_unique
    alt_of = dict(zip(pool["id"], pool["alt_text"], strict=True))
    image_of = dict(zip(pool["id"], pool["image"], strict=True))
    for row in rows.itertuples():
        ref_id, kind = row.id.rsplit("-", 1)
        user, assistant = json.loads(row.messages)
        # The same text recaptioning will send, so the captioner learns what it is asked.
        expected, _, _ = build_prompt(alt_of[ref_id] if kind == "recaption" else None, prompts)
        assert user == {"role": "user", "content": f"<image>\n{expected}"}
        assert assistant == {"role": "assistant", "content": f"caption {int(ref_id[4:])}"}
        assert row.image == image_of[ref_id]
    # Both rows of an image sit in the same split: the eval loss is on unseen images.
    train_images = {i.rsplit("-", 1)[0] for i in tables.train["id"]}
    eval_images = {i.rsplit("-", 1)[0] for i in tables.eval["id"]}
    assert not train_images & eval_images and len(eval_images) == 10


def test_captioner_parameters_fail_early_naming_the_key():
    with pytest.raises(ValidationError, match="needs `train` settings"):
        CaptionerParams(source="train")
    with pytest.raises(ValidationError, match="needs `path`"):
        CaptionerParams(source="path")
    with pytest.raises(ValidationError, match="must contain {alt_text}"):
        PoolRecaptionParams(recaption_prompt="no placeholder")
    with pytest.raises(InvalidParameters, match="captioning.captioner.train.lr"):
        validate_parameters({"captioning": {"captioner": {"train": {"steps": 3, "lr": -1}}}})
    with pytest.raises(InvalidParameters, match="captioning.captioner.train.deepspeed"):
        validate_project({"captioning": {"captioner": {"train": {
            "steps": 3, "lr": 1e-3, "deepspeed": "zero9"}}}}, deepspeed_dir="conf/base/deepspeed")


def test_caption_folder_follows_the_captioner_weights_and_prompts(tmp_path):
    model = tmp_path / "captioner"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights v1")
    (model / "config.json").write_text("{}")
    params = PoolRecaptionParams()
    first = caption_identity(params, str(model))
    assert first.startswith("local-")
    # Throughput settings do not change a caption: a re-run with them resumes.
    assert caption_identity(params.model_copy(update={"batch_size": 7, "shard_size": 3}),
                            str(model)) == first
    assert caption_identity(params.model_copy(update={"max_new_tokens": 9}), str(model)) != first
    assert caption_identity(params.model_copy(update={"use_alt_text": False}),
                            str(model)) != first
    (model / "config.json").write_text('{"edited": true}')
    assert caption_identity(params, str(model)) == first
    (model / "model.safetensors").write_bytes(b"weights v2")  # a retrained captioner
    assert caption_identity(params, str(model)) != first
    with pytest.raises(FileNotFoundError, match="no weight files"):
        weights_digest(tmp_path)


def test_recaption_node_hands_ray_a_recipe_and_builds_the_backend_itself_otherwise():
    from sail_pipeline.captioning.backends import BackendFactory, OracleBackend
    from sail_pipeline.pipelines.captioning.nodes import _recaption_backend

    oracle = {"a": "a caption"}
    plain = PoolRecaptionParams(backend="oracle")
    built = _recaption_backend(plain, {}, oracle)
    assert isinstance(built, OracleBackend) and built.captions == {"a": "a caption"}
    on_ray = PoolRecaptionParams(backend="oracle", executor={"kind": "ray"})
    recipe = _recaption_backend(on_ray, {}, oracle)
    # Small to pickle, built inside each Ray worker.
    assert isinstance(recipe, BackendFactory) and recipe.name == "oracle"
    assert recipe().captions == {"a": "a caption"}
    with pytest.raises(ValueError, match="needs the captioner's directory"):
        _recaption_backend(PoolRecaptionParams(backend="local"), {})
