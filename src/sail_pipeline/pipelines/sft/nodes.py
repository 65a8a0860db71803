"""SFT data nodes: candidate sets -> validated tables -> each stage's mixture."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pandas as pd

from sail_pipeline import lineage
from sail_pipeline.recipe_data import ALL_IN_ONE_TABLE, MIXTURE_TABLES
from sail_pipeline.schema import CANDIDATES, SFT_STAGES, STAGES, WorldParams
from sail_pipeline.sft_data import accounting
from sail_pipeline.sft_data.candidates import WorldSplit, build_candidate
from sail_pipeline.sft_data.mixture import accounting_table, group_of, mix
from sail_pipeline.sft_data.user_sets import held_out, read_user_set
from sail_pipeline.sft_data.validate import (
    processor_encoder,
    validate_conversations,
)
from sail_pipeline.world import BENCHMARK, TRAIN, rows_of_split

log = logging.getLogger(__name__)

MIXTURE_OUTPUTS = (*MIXTURE_TABLES, "sft_mixture_accounting", "sft_candidate_accounting",
                   "sft_rejections")


def _validator(tokenizer_path: str, preset: str, max_seq_len: int):
    from sail_pipeline.modeling.preset_specs import get_preset
    from sail_pipeline.modeling.processor import VLProcessor
    from sail_pipeline.modeling.tokenizer import load_tokenizer
    from sail_pipeline.text_limits import longest_token_chars

    processor = VLProcessor(load_tokenizer(tokenizer_path), get_preset(preset).image_settings())
    encode = processor_encoder(processor)

    longest = longest_token_chars(processor.tokenizer.get_vocab())

    def validate(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        return validate_conversations(table, encode, processor.num_tiles, max_seq_len, longest)

    return validate


def _frame(table: str | pd.DataFrame) -> pd.DataFrame:
    """The catalog hands candidate tables over as Parquet paths; a test, as DataFrames."""
    return table if isinstance(table, pd.DataFrame) else pd.read_parquet(table)


def candidate_node(name: str) -> Callable[..., tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
    """The node function that builds and validates candidate set `name`."""

    def run(scenes: pd.DataFrame, vqa: pd.DataFrame, conversations: pd.DataFrame,
            probes: pd.DataFrame, world: WorldParams, tokenizer: str, preset: str, sft,
            seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        # The longest any stage accepts; a mixture leaves out what its own stage cannot hold.
        validate = _validator(tokenizer, preset, max(getattr(sft, s).max_seq_len
                                                     for s in SFT_STAGES))
        if name in CANDIDATES:
            raw = {split: build_candidate(name, WorldSplit(
                rows_of_split(scenes, split), rows_of_split(vqa, split), rows_of_split(conversations, split),
                rows_of_split(probes, split), world), seed) for split in (TRAIN, BENCHMARK)}
            read_rejections = pd.DataFrame(columns=["id", "reason"])
        else:
            # A user's set has no held-out split: one row in 20, chosen by id, is held out.
            rows, read_rejections = read_user_set(name, sft.candidates[name])
            held = held_out(rows["id"])
            raw = {TRAIN: rows[~held], BENCHMARK: rows[held]}
        kept, rejected = {}, []
        for split, table in raw.items():
            kept[split], bad = validate(table)
            rejected.append(bad.assign(split=split))
        rejected.append(read_rejections.assign(split=TRAIN))
        rejections = pd.concat(rejected, ignore_index=True)[["split", "id", "reason"]]
        log.info("candidate set %s: %d kept (+%d held out), %d rejected %s", name,
                 len(kept[TRAIN]), len(kept[BENCHMARK]), len(rejections),
                 rejections["reason"].value_counts().to_dict() if len(rejections) else "")
        return kept[TRAIN], kept[BENCHMARK], rejections

    run.__name__ = run.__qualname__ = f"candidate_{name}"
    return run


def mix_node(names: list[str]) -> Callable[..., dict[str, pd.DataFrame]]:
    """The node function that draws every stage's mixture from the named candidate sets.

    Its inputs are the sets' train tables, held-out tables and rejections, in `names` order.
    """

    def run(sft, seed: int, *tables: str | pd.DataFrame) -> dict[str, pd.DataFrame]:
        missing = [name for name in sft.candidate_names() if name not in names]
        if missing:
            raise ValueError(f"sft.mixtures name candidate sets {missing} that this pipeline "
                             f"was not built with ({names}); start a new `kedro run`")
        n = len(names)
        train = {name: _frame(t) for name, t in zip(names, tables[:n], strict=True)}
        heldout = {name: _frame(t) for name, t in zip(names, tables[n:2 * n], strict=True)}
        rejected = dict(zip(names, tables[2 * n:], strict=True))
        groups = {name: group_of(name, {k: v.group for k, v in sft.candidates.items()})
                  for name in names}
        out: dict[str, pd.DataFrame] = {}
        lines = []
        for stage in SFT_STAGES:
            mixture = getattr(sft.mixtures, stage)
            limit = getattr(sft, stage).max_seq_len
            table = STAGES[stage].table
            out[f"{table}_train"], drawn = mix(stage, "train", mixture, mixture.size, train,
                                               groups, limit, seed)
            lines += drawn
            out[f"{table}_eval"], drawn = mix(stage, "eval", mixture, mixture.eval_size, heldout,
                                              groups, limit, seed)
            lines += drawn
        # The same rows in one shuffled stage: what `sft.schedule: all_in_one` trains on.
        for split in ("train", "eval"):
            union = pd.concat([out[f"{STAGES[s].table}_{split}"] for s in SFT_STAGES],
                              ignore_index=True)
            out[f"{ALL_IN_ONE_TABLE}_{split}"] = union.sample(frac=1.0, random_state=seed
                                                              ).reset_index(drop=True)
        mixtures = accounting_table(lines)
        out["sft_mixture_accounting"] = mixtures
        out["sft_candidate_accounting"] = accounting.candidate_table(train, heldout, rejected,
                                                                     groups)
        out["sft_rejections"] = accounting.rejection_table(rejected)
        lineage.log_metrics(accounting.mixture_metrics(mixtures))
        for stage in SFT_STAGES:
            shares = mixtures[(mixtures["stage"] == stage) & (mixtures["split"] == "train")]
            log.info("%s mixture: %d rows, groups %s", stage, shares["rows"].sum(),
                     shares.groupby("group")["share"].sum().round(3).to_dict())
        return out

    run.__name__ = run.__qualname__ = "mix_sft_data"
    return run

