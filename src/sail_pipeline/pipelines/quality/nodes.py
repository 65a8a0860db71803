"""Quality nodes: caption sources -> signals (cached) -> statistics report and filter -> the
pool Pretrain-Alignment and -Advance train on. The work is in `sail_pipeline.quality`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sail_pipeline import identity, lineage
from sail_pipeline.captioning import credentials
from sail_pipeline.captioning.factory import weights_digest
from sail_pipeline.engine import stage as engine_stage
from sail_pipeline.errors import UserError
from sail_pipeline.quality import statistics
from sail_pipeline.quality.filter import decide
from sail_pipeline.quality.ground_truth import ground_truth
from sail_pipeline.quality.signals import (
    IMAGE_VERSION,
    TEXT_VERSION,
    ClipBatch,
    ImageBatch,
    JudgeBatch,
    LikelihoodBatch,
    SignalGroup,
    TextBatch,
    compute_signals,
)
from sail_pipeline.recipe_data import pool_caption_tables
from sail_pipeline.schema import CurationParams, StageSizeParams, result_settings
from sail_pipeline.schema.quality import SIGNALS, ClipParams, FilterParams, QualityParams

log = logging.getLogger(__name__)
CANDIDATE_COLUMNS = ["id", "source", "caption"]


class CaptionSourceError(UserError, ValueError):
    """An extra caption source whose file cannot give its captions: names the source."""


class EmptyPretrainPool(UserError, ValueError):
    """No caption of `pretrain.caption_source` passed the filter: Pretrain has nothing."""


def _rows(ids: Any, source: str, captions: Any) -> pd.DataFrame:
    return pd.DataFrame({"id": list(ids), "source": source,
                         "caption": pd.Series(list(captions), dtype=object)})


def caption_candidates(manifest: pd.DataFrame, recaptions: pd.DataFrame,
                       reference_captions: pd.DataFrame, params: QualityParams) -> pd.DataFrame:
    """One row per (kept id, caption source) that the source has a row for."""
    tables = {"alt_text": _rows(manifest["id"], "alt_text", manifest["alt_text"]),
              "recaption": _rows(recaptions["id"], "recaption", recaptions["caption"]),
              "reference": _rows(reference_captions["id"], "reference",
                                 reference_captions["caption"])}
    for extra in params.extra_sources:
        if not extra.path.exists():  # checked at start too; it may have moved since
            raise CaptionSourceError(f"quality.extra_sources[{extra.name}]: {extra.path} "
                                     f"does not exist; give the Parquet file of that caption "
                                     f"column")
        try:
            table = pd.read_parquet(extra.path)
        except (OSError, ValueError) as error:  # pyarrow's errors derive from these
            raise CaptionSourceError(f"quality.extra_sources[{extra.name}]: {extra.path} is "
                                     f"not a Parquet table ({type(error).__name__}); give one "
                                     f"with an id and a caption column") from None
        missing = {extra.id_column, extra.caption_column} - set(table.columns)
        if missing:
            raise CaptionSourceError(
                f"quality.extra_sources[{extra.name}]: {extra.path} lacks columns "
                f"{sorted(missing)} (has {list(table.columns)}); set its id_column and "
                f"caption_column to the file's own names")
        tables[extra.name] = _rows(table[extra.id_column].astype(str), extra.name,
                                   table[extra.caption_column])
    kept = set(manifest["id"])
    out = []
    for name in params.sources:
        table = tables[name]
        unknown = ~table["id"].isin(kept)
        if unknown.any():
            log.warning("caption source %s: %d ids not in the curated pool, ignored", name,
                        int(unknown.sum()))
        out.append(table[~unknown].drop_duplicates("id"))
    candidates = pd.concat(out, ignore_index=True)[CANDIDATE_COLUMNS]
    log.info("caption candidates: %s", candidates["source"].value_counts().to_dict())
    return candidates


def train_clip(reference_captions: pd.DataFrame, manifest: pd.DataFrame, tokenizer: str,
               params: ClipParams, seed: int, workdir: str) -> dict[str, Any]:
    """The stand-in CLIP, trained on the reference pairs, or the user's own from a path."""
    if params.source == "path":
        return engine_stage.from_path(str(params.path))
    from sail_pipeline.quality.clip import train_standin_clip

    images = manifest.set_index("id")["image"]
    pairs = reference_captions[reference_captions["id"].isin(images.index)]
    summary = train_standin_clip(list(images.loc[pairs["id"]]), list(pairs["caption"]),
                                 tokenizer, Path(workdir) / "hf", params, seed)
    lineage.log_metrics({f"quality_clip/{k}": float(v) for k, v in summary.items()})
    return {"hf_dir": str(Path(workdir) / "hf"), "run_dir": workdir, "summary": summary}


def _groups(params: QualityParams, clip: dict[str, Any], captioner: dict[str, Any],
            tokenizer: str) -> list[SignalGroup]:
    from sail_pipeline.quality.clip import CLIP_VERSION
    from sail_pipeline.quality.likelihood import LIKELIHOOD_VERSION

    limit = params.max_caption_chars
    groups = [
        SignalGroup("text", TextBatch, (TEXT_VERSION, limit, identity.file_digest(Path(tokenizer) / "tokenizer.json")),
                    {"tokenizer_dir": tokenizer, "max_chars": limit}, batch_size=2048),
        SignalGroup("image", ImageBatch, IMAGE_VERSION, per_image=True, batch_size=2048),
        SignalGroup("clip", ClipBatch, (CLIP_VERSION, weights_digest(clip["hf_dir"]), limit),
                    {"clip_dir": clip["hf_dir"], "batch_size": params.clip.score_batch_size,
                     "max_chars": limit}, batch_size=2048),
    ]
    if params.likelihood.enabled:
        groups.append(SignalGroup(
            "likelihood", LikelihoodBatch,
            (LIKELIHOOD_VERSION, weights_digest(captioner["hf_dir"]), result_settings(params.likelihood),
             limit),
            {"model_dir": captioner["hf_dir"], "batch_size": params.likelihood.batch_size,
             "max_caption_tokens": params.likelihood.max_caption_tokens, "max_chars": limit},
            batch_size=1024))
    if params.judge.enabled:
        from sail_pipeline.quality.judge import JUDGE_VERSION

        judge = params.judge
        groups.append(SignalGroup(
            "judge", JudgeBatch, (JUDGE_VERSION, result_settings(judge), limit),
            {"params": judge, "credentials": credentials.lookup(judge.credentials),
             "max_chars": limit}, batch_size=judge.batch_size))
    return groups


def quality_signals(candidates: pd.DataFrame, manifest: pd.DataFrame,
                    world_scenes: pd.DataFrame | None, clip: dict[str, Any],
                    captioner: dict[str, Any], tokenizer: str, params: QualityParams,
                    curation: CurationParams, cache: str) -> pd.DataFrame:
    """Every signal of every candidate; only what the cache lacks is computed."""
    pool = manifest[["id", "image"]].assign(
        ground_truth=ground_truth(manifest, world_scenes, curation).to_numpy())
    table = candidates.merge(pool, on="id", how="left", validate="many_to_one")
    signals = compute_signals(table, _groups(params, clip, captioner, tokenizer), cache,
                              params.executor)
    for column in SIGNALS:
        if column not in signals:
            signals[column] = np.nan  # a signal turned off (likelihood, judge) stays a column
    for column in ("text_error", "image_error", "clip_error", "likelihood_error",
                   "judge_error"):
        if column not in signals:
            signals[column] = None
    return signals


def _metric_name(name: str) -> str:
    # MLflow refuses "<" and ">" in a metric's name.
    return name.replace("<", " below ").replace(">", " above ")


def filter_captions(signals: pd.DataFrame, params: FilterParams
                    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, Any]:
    decisions, rejected, funnel = decide(signals, params)
    lineage.log_metrics({_metric_name(f"quality.{row.source}.{row.step}"): float(row.count)
                         for row in funnel.itertuples(index=False)})
    summary = funnel[funnel["step"].isin(["input", "kept"])].pivot(
        index="source", columns="step", values="count")
    log.info("quality filter (kept of input): %s", summary.to_dict("index"))
    return decisions, rejected, funnel, statistics.funnel_chart(funnel)


def quality_report(signals: pd.DataFrame, candidates: pd.DataFrame
                   ) -> tuple[pd.DataFrame, str, Any]:
    """SAIL-Caption's Table 1: every source, then only the ids every source has."""
    table = statistics.source_statistics(signals, candidates, SIGNALS)
    sources = list(dict.fromkeys(signals["source"]))
    paired = statistics.paired_ids(signals, sources)
    same = signals["id"].isin(paired)
    paired_table = statistics.source_statistics(signals[same], candidates[
        candidates["id"].isin(paired)], SIGNALS)
    text = (f"## Caption sources, all rows\n\n{statistics.markdown(table, statistics.TABLE_SIGNALS)}"
            f"\n\n## The same {len(paired)} images in every source\n\n"
            f"{statistics.markdown(paired_table, statistics.TABLE_SIGNALS)}\n")
    for row in table.to_dict("records"):
        lineage.log_metrics({f"quality_stats/{row['source']}/{k}": float(v)
                             for k, v in row.items() if k != "source" and pd.notna(v)})
    both = pd.concat([table.assign(rows="all"), paired_table.assign(rows="paired")],
                     ignore_index=True)
    return both, text, statistics.histograms(signals, SIGNALS)


def pretrain_tables(decisions: pd.DataFrame, candidates: pd.DataFrame, manifest: pd.DataFrame,
                    ocr: pd.DataFrame, caption_source: str, sizes: StageSizeParams,
                    seed: int) -> tuple[str, str]:
    """Alignment and Advance from the kept captions of `pretrain.caption_source`."""
    kept = decisions[(decisions["source"] == caption_source) & decisions["kept"]]
    captions = candidates[candidates["source"] == caption_source].set_index("id")["caption"]
    pool = manifest[["id", "image"]][manifest["id"].isin(set(kept["id"]))].copy()
    pool["caption"] = captions.loc[pool["id"]].to_numpy()
    if pool.empty:
        raise EmptyPretrainPool(
            f"no caption of source {caption_source!r} (pretrain.caption_source) passed the "
            f"quality filter, so Pretrain has no pairs: loosen the rule that rejected them in "
            f"quality.filter (data/08_reporting/quality_funnel.csv says which), or set "
            f"pretrain.caption_source to another source in quality.sources")
    tables = pool_caption_tables(pool, ocr, sizes, seed)
    log.info("pretrain pool: %d kept %s captions -> alignment %d, advance %d rows",
             len(pool), caption_source, len(tables["alignment_train"]),
             len(tables["advance_train"]))
    lineage.log_metrics({"quality.pretrain_pool": float(len(pool))})
    return tables["alignment_train"], tables["advance_train"]
