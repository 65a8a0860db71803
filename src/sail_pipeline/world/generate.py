"""Generating the whole world as Parquet-ready tables."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pandas as pd
from rich.progress import Progress

from sail_pipeline.world.alt_text import alt_text
from sail_pipeline.world.captions import detailed_caption
from sail_pipeline.world.config import WorldParams, check_feasible
from sail_pipeline.world.conversation import conversation
from sail_pipeline.world.probes import probes_for
from sail_pipeline.world.render import encode_png, render
from sail_pipeline.world.sampling import sample_scene
from sail_pipeline.world.scene import Scene, Signature, scene_signature
from sail_pipeline.world.seeding import SceneStreams, scene_streams
from sail_pipeline.world.vqa import vqa_pairs

TRAIN = "train"
BENCHMARK = "benchmark"


def rows_of_split(table: pd.DataFrame, split: str) -> pd.DataFrame:
    """A world table's rows of one split (TRAIN, BENCHMARK), renumbered."""
    return table[table["split"] == split].reset_index(drop=True)
_ID_PREFIX = {TRAIN: "train", BENCHMARK: "bench"}
# Resampling a benchmark scene that duplicates a training scene is rare; a world where it
# keeps happening is too small to have a meaningful held-out benchmark.
_MAX_RESAMPLES = 1000

SCENE_COLUMNS = [
    "id",
    "split",
    "image",
    "width",
    "height",
    "ground_truth",
    "alt_text",
    "reference_caption",
    "has_text",
]
VQA_COLUMNS = ["id", "scene_id", "split", "question_type", "question", "answer", "choices"]
CONVERSATION_COLUMNS = ["id", "scene_id", "split", "messages"]
PROBE_COLUMNS = ["id", "scene_id", "split", "question_type", "category", "group_id", "question",
                 "answer", "choices"]


@dataclass
class WorldTables:
    """Scenes, VQA pairs, conversations and probes; columns are str/int/bool/bytes only."""

    scenes: pd.DataFrame
    vqa: pd.DataFrame
    conversations: pd.DataFrame
    probes: pd.DataFrame


def scene_id_for(split: str, index: int) -> str:
    return f"{_ID_PREFIX[split]}-{index:06d}"


def _probe_rows(scene: Scene, split: str, streams: SceneStreams, cfg: WorldParams
                ) -> list[dict[str, Any]]:
    rows = []
    per_type: dict[str, int] = {}
    # Rotations of one MMBench question are scored together only on the benchmark split.
    for probe in probes_for(scene, streams.probes, cfg, circular=split == BENCHMARK):
        k = per_type.get(probe.question_type, 0)
        per_type[probe.question_type] = k + 1
        rows.append({
            "id": f"{scene.scene_id}-{probe.question_type}-{k}",
            "scene_id": scene.scene_id,
            "split": split,
            "question_type": probe.question_type,
            "category": probe.category,
            "group_id": f"{scene.scene_id}-{probe.group}",
            "question": probe.question,
            "answer": probe.answer,
            "choices": json.dumps(probe.choices),
        })
    return rows


def _rows(
    scene: Scene, split: str, streams: SceneStreams, cfg: WorldParams
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    image = render(scene, cfg)
    scene_row = {
        "id": scene.scene_id,
        "split": split,
        "image": encode_png(image),
        "width": image.width,
        "height": image.height,
        "ground_truth": json.dumps(scene.to_dict()),
        "alt_text": alt_text(scene, streams.alt_text, cfg),
        "reference_caption": detailed_caption(scene),
        "has_text": scene.text is not None,
    }
    vqa_rows = []
    per_type: dict[str, int] = {}
    for pair in vqa_pairs(scene, streams.vqa, cfg):
        k = per_type.get(pair.question_type, 0)
        per_type[pair.question_type] = k + 1
        vqa_rows.append(
            {
                "id": f"{scene.scene_id}-{pair.question_type}-{k}",
                "scene_id": scene.scene_id,
                "split": split,
                "question_type": pair.question_type,
                "question": pair.question,
                "answer": pair.answer,
                "choices": json.dumps(pair.choices),
            }
        )
    conversation_row = {
        "id": f"{scene.scene_id}-conv-0",
        "scene_id": scene.scene_id,
        "split": split,
        "messages": json.dumps(conversation(scene, streams.conversation)),
    }
    return scene_row, vqa_rows, conversation_row


def _benchmark_scene(
    streams: SceneStreams, cfg: WorldParams, scene_id: str, train_signatures: set[Signature]
) -> Scene:
    for _ in range(_MAX_RESAMPLES):
        scene = sample_scene(streams.scene, cfg, scene_id)
        if scene_signature(scene) not in train_signatures:
            return scene
    raise RuntimeError(
        f"could not draw {scene_id} distinct from all training scenes in {_MAX_RESAMPLES} "
        "tries; the world config leaves too few distinct scenes"
    )


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[], None]]:
    if not enabled:
        yield lambda: None
        return
    with Progress() as progress:
        task = progress.add_task("Generating world", total=total)
        yield lambda: progress.advance(task)


def generate_world(cfg: WorldParams, show_progress: bool = False) -> WorldTables:
    """Render every train and benchmark scene with its texts; deterministic in ``cfg``."""
    check_feasible(cfg)
    scene_rows: list[dict[str, Any]] = []
    vqa_rows: list[dict[str, Any]] = []
    conversation_rows: list[dict[str, Any]] = []
    probe_rows: list[dict[str, Any]] = []
    train_signatures: set[Signature] = set()

    with _progress(show_progress, cfg.n_train + cfg.n_benchmark) as advance:
        for split, n in ((TRAIN, cfg.n_train), (BENCHMARK, cfg.n_benchmark)):
            for index in range(n):
                streams = scene_streams(cfg.seed, split, index)
                scene_id = scene_id_for(split, index)
                if split == TRAIN:
                    scene = sample_scene(streams.scene, cfg, scene_id)
                    train_signatures.add(scene_signature(scene))
                else:
                    scene = _benchmark_scene(streams, cfg, scene_id, train_signatures)
                scene_row, pairs, conv = _rows(scene, split, streams, cfg)
                scene_rows.append(scene_row)
                vqa_rows.extend(pairs)
                conversation_rows.append(conv)
                probe_rows.extend(_probe_rows(scene, split, streams, cfg))
                advance()

    return WorldTables(
        scenes=pd.DataFrame(scene_rows, columns=SCENE_COLUMNS),
        vqa=pd.DataFrame(vqa_rows, columns=VQA_COLUMNS),
        conversations=pd.DataFrame(conversation_rows, columns=CONVERSATION_COLUMNS),
        probes=pd.DataFrame(probe_rows, columns=PROBE_COLUMNS),
    )
