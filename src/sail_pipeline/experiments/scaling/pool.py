"""Each variant's pool of (id, caption) pairs, and a point's nested subsample of it.

A pool is named by its caption source and whether the sweep's filter applies
(`recaption_filtered`). A point takes the first N pairs of its pool in an order fixed by its
seed, so a seed's N=1000 set is inside its N=2000 set and extending the grid only adds pairs.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from sail_pipeline.errors import UserError
from sail_pipeline.schema import SCALING_VARIANTS, ScalingParams, ScalingVariant

log = logging.getLogger(__name__)

POOL_COLUMNS = ["pool", "id", "caption"]


class PoolTooSmall(UserError, ValueError):
    """The grid asks for more pairs than a variant's pool has."""


def pool_name(source: str, filtered: bool) -> str:
    return f"{source}_filtered" if filtered else source


def pools_of(variant: ScalingVariant) -> tuple[str, str | None]:
    """(the main pool, the expansion pool or None) a variant draws from."""
    main = pool_name(variant.captions, variant.filtered)
    return main, (pool_name(variant.expansion, False) if variant.expansion else None)


def _usable(captions: pd.Series) -> pd.Series:
    return captions.notna() & (captions.astype(str).str.strip() != "")


def build_pools(candidates: pd.DataFrame, kept: pd.DataFrame, world_captions: dict[str, str],
                params: ScalingParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pairs of every pool the variants need, one accounting row per pool).

    `candidates`: id, source, caption (the quality pipeline's caption candidates); `kept`: id,
    source, kept (the sweep's filter's decisions); `world_captions`: the strong captioner's
    caption per pool id where the world has one, which extends `reference` beyond the
    captioner's training subset. An empty caption cannot be trained on: it is dropped and
    counted, whatever the variant.
    """
    wanted = {name for v in params.variants for name in pools_of(SCALING_VARIANTS[v]) if name}
    parts, accounting = [], []
    for name in sorted(wanted):
        source, filtered = name.removesuffix("_filtered"), name.endswith("_filtered")
        rows = candidates[candidates["source"] == source][["id", "caption"]]
        if source == "reference" and world_captions:
            extra = pd.DataFrame({"id": list(world_captions), "caption": list(
                world_captions.values())})
            pool_ids = set(candidates["id"])
            extra = extra[extra["id"].isin(pool_ids) & ~extra["id"].isin(set(rows["id"]))]
            rows = pd.concat([rows, extra], ignore_index=True)
        usable = _usable(rows["caption"])
        entry = {"pool": name, "candidates": len(rows), "empty": int((~usable).sum())}
        rows = rows[usable]
        if filtered:
            passed = set(kept[(kept["source"] == source) & kept["kept"]]["id"])
            keep = rows["id"].isin(passed)
            entry["rejected_by_filter"] = int((~keep).sum())
            rows = rows[keep]
        else:
            entry["rejected_by_filter"] = 0
        entry["pairs"] = len(rows)
        accounting.append(entry)
        parts.append(rows.assign(pool=name)[POOL_COLUMNS])
        log.info("scaling pool %s: %d pairs of %d candidates (%d empty, %d rejected by the "
                 "filter)", name, entry["pairs"], entry["candidates"], entry["empty"],
                 entry["rejected_by_filter"])
    pairs = (pd.concat(parts, ignore_index=True) if parts
             else pd.DataFrame(columns=POOL_COLUMNS))
    return pairs, pd.DataFrame(accounting)


def check_sizes(accounting: pd.DataFrame, params: ScalingParams) -> None:
    """Fail before any training when a variant's pool cannot supply the grid's largest size."""
    pairs = dict(zip(accounting["pool"], accounting["pairs"], strict=True))
    problems = []
    for name in params.variants:
        variant = SCALING_VARIANTS[name]
        main, expansion = pools_of(variant)
        largest, smallest = params.sizes[-1], params.sizes[0]
        if expansion is None and pairs[main] < largest:
            problems.append(f"variant {name}: pool {main} has {pairs[main]} pairs")
        elif expansion is not None and (pairs[main] < smallest
                                        or pairs[expansion] < largest - smallest):
            problems.append(f"variant {name}: pool {main} has {pairs[main]} pairs (needs "
                            f"{smallest}), {expansion} has {pairs[expansion]} (needs "
                            f"{largest - smallest})")
    if problems:
        raise PoolTooSmall(f"scaling.sizes: the largest size {params.sizes[-1]} is more than "
                           f"a pool holds: " + "; ".join(problems))


def _ordered(pairs: pd.DataFrame, pool: str, seed: int) -> pd.DataFrame:
    rows = pairs[pairs["pool"] == pool].sort_values("id", kind="stable").reset_index(drop=True)
    return rows.iloc[np.random.default_rng(seed).permutation(len(rows))].reset_index(drop=True)


def point_pairs(pairs: pd.DataFrame, variant: str, n: int, seed: int, smallest: int
                ) -> pd.DataFrame:
    """The point's N pairs (id, caption), in the seed's order; nested across N."""
    main, expansion = pools_of(SCALING_VARIANTS[variant])
    ordered = _ordered(pairs, main, seed)
    if expansion is not None:
        clean = ordered.iloc[:min(n, smallest)]
        noisy = _ordered(pairs, expansion, seed)
        noisy = noisy[~noisy["id"].isin(set(clean["id"]))]
        ordered = pd.concat([clean, noisy.iloc[:max(0, n - smallest)]], ignore_index=True)
    if len(ordered) < n:
        raise PoolTooSmall(f"scaling.sizes: variant {variant} needs {n} pairs, its pool has "
                           f"{len(ordered)}")
    return ordered.iloc[:n][["id", "caption"]].reset_index(drop=True)
