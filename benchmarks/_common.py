"""What the benchmarks share: the world's SFT conversations, encoded as the trainer sees them."""

from __future__ import annotations

import time

import pandas as pd

from sail_pipeline import recipe_data
from sail_pipeline.modeling.presets import get_preset
from sail_pipeline.modeling.processor import VLProcessor
from sail_pipeline.modeling.tokenizer import train_tokenizer
from sail_pipeline.training.data import ConversationData
from sail_pipeline.world import WorldParams, generate_world

SFT_STAGES = ("knowledge", "instruction", "preference")


def world_sft(n_train: int, seed: int = 0, preset: str = "tiny",
              max_seq_len: int = 256) -> tuple[dict[str, ConversationData], VLProcessor]:
    """Each SFT stage's training table of a freshly generated world, encoded."""
    started = time.perf_counter()
    world = generate_world(WorldParams(n_train=n_train, n_benchmark=10, seed=seed))
    train = {name: getattr(world, name) for name in ("scenes", "vqa", "conversations", "probes")}
    train = {k: v[v["split"] == "train"] for k, v in train.items()}
    tokenizer = train_tokenizer(recipe_data.text_corpus(train["scenes"], train["vqa"],
                                                        train["conversations"], train["probes"]),
                                1024)
    processor = VLProcessor(tokenizer, get_preset(preset).image_settings())
    tables = recipe_data.stage_tables(train["scenes"], train["vqa"], train["conversations"],
                                      recipe_data.StageSizeParams(), seed, probes=train["probes"])
    data = {name: ConversationData(tables[name], processor, max_seq_len) for name in SFT_STAGES}
    print(f"world of {n_train} scenes encoded in {time.perf_counter() - started:.0f}s: "
          + ", ".join(f"{k} {len(v)}" for k, v in data.items()), flush=True)
    return data, processor


def markdown(rows: list[dict]) -> str:
    frame = pd.DataFrame(rows)
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row)
            + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])
