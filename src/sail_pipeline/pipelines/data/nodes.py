"""Data pipeline nodes: world -> tokenizer -> the tables every stage trains on."""

from __future__ import annotations

import logging

import pandas as pd

from sail_pipeline import lineage, recipe_data
from sail_pipeline.modeling.tokenizer import prepare_pretrained_tokenizer, train_tokenizer
from sail_pipeline.schema import DataParams, StageSizeParams, TokenizerParams, WorldParams
from sail_pipeline.world import BENCHMARK, TRAIN, generate_world, rows_of_split

log = logging.getLogger(__name__)


def make_world(world_params: WorldParams
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    world = generate_world(world_params, show_progress=True)
    log.info("world: %d scenes, %d questions, %d conversations, %d benchmark-format probes",
             len(world.scenes), len(world.vqa), len(world.conversations), len(world.probes))
    return world.scenes, world.vqa, world.conversations, world.probes


def make_tokenizer(scenes: pd.DataFrame, vqa: pd.DataFrame, conversations: pd.DataFrame,
                   probes: pd.DataFrame, params: TokenizerParams):
    if params.source == "path":
        tokenizer = prepare_pretrained_tokenizer(str(params.path))
        log.info("tokenizer: %s with %d tokens", params.path, len(tokenizer))
        return tokenizer
    corpus = recipe_data.text_corpus(rows_of_split(scenes, TRAIN), rows_of_split(vqa, TRAIN),
                                     rows_of_split(conversations, TRAIN), rows_of_split(probes, TRAIN))
    tokenizer = train_tokenizer(corpus, params.vocab_size)
    log.info("tokenizer: %d tokens", len(tokenizer))
    return tokenizer


def make_tables(scenes: pd.DataFrame, vqa: pd.DataFrame, conversations: pd.DataFrame,
                probes: pd.DataFrame, params: DataParams, seed: int) -> dict[str, pd.DataFrame]:
    tables: dict[str, pd.DataFrame] = {}
    for split, suffix in ((TRAIN, "train"), (BENCHMARK, "eval")):
        s, q, c = rows_of_split(scenes, split), rows_of_split(vqa, split), rows_of_split(conversations, split)
        p = rows_of_split(probes, split)
        sizes = params.stage_sizes if split == TRAIN else StageSizeParams()
        for name, table in recipe_data.stage_tables(s, q, c, sizes, seed, params.advance_ocr,
                                                    probes=p).items():
            if f"{name}_{suffix}" in recipe_data.TABLE_NAMES:
                tables[f"{name}_{suffix}"] = table
        if split == TRAIN:
            # Advance's OCR rows; its captions come from the quality-filtered pool.
            tables["advance_ocr_train"] = recipe_data.vqa_table(s, q, ["ocr"]).iloc[
                :None if params.advance_ocr else 0]
        tables[f"lm_text_{suffix}"] = recipe_data.lm_text_table(s, q, c, p)
        tables[f"vision_attributes_{suffix}"] = recipe_data.vision_attribute_table(s, params.world)
    tables["benchmark"] = recipe_data.benchmark_table(
        rows_of_split(scenes, BENCHMARK), rows_of_split(vqa, BENCHMARK), rows_of_split(probes, BENCHMARK),
        params.world)
    counts = {name: len(table) for name, table in tables.items()}
    log.info("tables: %s", counts)
    lineage.log_metrics({f"data/{name}_rows": float(n) for name, n in counts.items()})
    return tables
