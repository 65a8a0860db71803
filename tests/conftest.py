"""Shared fixtures: a small world and a tokenizer trained on it (seconds, not minutes)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


@pytest.fixture(scope="session")
def small_world():
    from sail_pipeline.world import WorldConfig, generate_world

    return generate_world(WorldConfig(n_train=120, n_benchmark=20, seed=3))


@pytest.fixture(scope="session")
def world_tokenizer(small_world):
    from sail_pipeline import recipe_data
    from sail_pipeline.modeling.tokenizer import train_tokenizer

    train = {name: getattr(small_world, name) for name in ("scenes", "vqa", "conversations", "probes")}
    train = {k: v[v["split"] == "train"] for k, v in train.items()}
    return train_tokenizer(recipe_data.text_corpus(train["scenes"], train["vqa"],
                                                   train["conversations"], train["probes"]), 512)
