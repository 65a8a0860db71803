"""Random streams derived from (seed, split, index, purpose).

Deriving every scene's generator from its own coordinates, rather than drawing scenes from
one long stream, keeps a scene identical when n_train or n_benchmark changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sail_pipeline.identity import stable_hash


@dataclass(frozen=True)
class SceneStreams:
    """Independent generators so that changing one text generator never shifts another.

    A new stream goes last: ``SeedSequence.spawn`` keeps earlier children unchanged.
    """

    scene: np.random.Generator
    alt_text: np.random.Generator
    vqa: np.random.Generator
    conversation: np.random.Generator
    probes: np.random.Generator


def scene_streams(seed: int, split: str, index: int) -> SceneStreams:
    root = np.random.SeedSequence(entropy=seed, spawn_key=(stable_hash(split), index))
    children = [np.random.default_rng(child) for child in root.spawn(5)]
    return SceneStreams(*children)


def render_rng(seed: int, scene_id: str) -> np.random.Generator:
    """Background noise depends only on the scene, so ``render`` is a pure function."""
    return np.random.default_rng(np.random.SeedSequence(entropy=[seed, stable_hash(scene_id)]))
