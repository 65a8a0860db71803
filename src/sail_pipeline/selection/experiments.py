"""SAIL-VL's SFT data experiments as plain functions over a `train` callback.

- quality: train on `size` rows of each candidate alone, at every size, and rank;
- composition: halve (or drop) one group of a base mixture at a time;
- incremental (Individual Select): add candidates to a base pool one at a time, keeping one
  when the average rises by more than a threshold (default: the base's seed noise).

Tables are built so that shared inputs are identical: a source's rows come from one
permutation per (source, seed), and a table is its sources' first rows, so the composition's
base and the incremental search's base are the same table (and the same stored point).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sail_pipeline.schema import GROUPS
from sail_pipeline.schema.selection import (
    CompositionParams,
    IncrementalParams,
    QualityParams,
)
from sail_pipeline.sft_data.mixture import row_counts, stable_int

AVERAGE = "sft/average"
# label, table, seed -> the point's result ({"scores": {...}, ...})
Train = Callable[[str, pd.DataFrame, int], dict]


class SelectionSizeError(ValueError):
    """An experiment asks a candidate for more rows than it has (raised before training)."""


def _stream(source: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, stable_int(source)])


def compose(tables: dict[str, pd.DataFrame], counts: dict[str, int], seed: int,
            key: str = "counts") -> pd.DataFrame:
    """The first `counts[s]` rows of each source's seeded permutation, shuffled by seed.

    Prefixes of one permutation make tables nested: halving a group keeps a subset of the
    base's rows, and a base plus a candidate contains the base.
    """
    parts = []
    for source in sorted(counts):
        n, table = counts[source], tables[source]
        if n > len(table):
            raise SelectionSizeError(f"selection.{key}: {source} has {len(table)} rows, "
                                     f"{n} were asked for")
        if n:
            order = _stream(source, seed).permutation(len(table))[:n]
            parts.append(table.iloc[np.sort(order)].assign(source=source))
    rows = pd.concat(parts, ignore_index=True)
    rows = rows.assign(id=rows["source"] + "/" + rows["id"].astype(str))
    return rows.sample(frac=1.0, random_state=np.random.default_rng([seed, len(rows)])
                       ).reset_index(drop=True)


def _row(result: dict, **fields) -> dict:
    return {**fields, **result["scores"], "reused": result.get("reused", False),
            "identity": result.get("identity", "")}


# --- quality --------------------------------------------------------------------------------

def quality_points(params: QualityParams, seeds: list[int]) -> list[tuple[str, int, int]]:
    return [(c, n, s) for c in params.candidates for n in params.sizes for s in seeds]


def check_sizes(quality: QualityParams, composition: CompositionParams,
                incremental: IncrementalParams, rows: dict[str, int]) -> None:
    """Every table an experiment will draw fits its sources (checked before anything trains)."""
    problems = []
    short = {c: rows[c] for c in quality.candidates if rows[c] < quality.sizes[-1]}
    if short:
        problems.append(f"selection.quality.sizes: the largest size, {quality.sizes[-1]}, is "
                        f"more rows than {short} have")
    for key, mixture in (("composition.base", composition.base),
                         ("incremental.base", incremental.base)):
        for source, n in row_counts(mixture.size, mixture.sources).items():
            if n > rows[source]:
                problems.append(f"selection.{key}.size: {source} would give {n} rows of its "
                                f"{rows[source]}")
    base = row_counts(incremental.base.size, incremental.base.sources)
    for candidate in incremental.candidates:
        wanted = base.get(candidate, 0) + incremental.rows_per_candidate
        if wanted > rows[candidate]:
            problems.append(f"selection.incremental.rows_per_candidate: {candidate} has "
                            f"{rows[candidate]} rows, {wanted} would be drawn")
    if problems:
        raise SelectionSizeError("; ".join(problems))


def run_quality(params: QualityParams, seeds: list[int], tables: dict[str, pd.DataFrame],
                train: Train) -> pd.DataFrame:
    results = []
    for candidate, size, seed in quality_points(params, seeds):
        table = compose(tables, {candidate: size}, seed, key="quality.sizes")
        result = train(f"{candidate} n={size} seed={seed}", table, seed)
        results.append(_row(result, candidate=candidate, size=size, seed=seed))
    return pd.DataFrame(results)


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's τ-b between two score lists over the same items (ties handled)."""
    n = len(a)
    concordant = discordant = ties_a = ties_b = 0
    for i in range(n):
        for j in range(i + 1, n):
            da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif da == db:
                concordant += 1
            else:
                discordant += 1
    denominator = np.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
    return float((concordant - discordant) / denominator) if denominator else float("nan")


def quality_ranking(points: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per candidate and size: mean, std and rank of the average; τ between every two sizes)."""
    stats = points.groupby(["candidate", "size"])[AVERAGE].agg(["mean", "std", "count"]
                                                               ).reset_index()
    stats["rank"] = stats.groupby("size")["mean"].rank(ascending=False, method="min")
    sizes = sorted(stats["size"].unique())
    wide = stats.pivot(index="candidate", columns="size", values="mean")
    taus = pd.DataFrame(index=sizes, columns=sizes, dtype=float)
    for a in sizes:
        for b in sizes:
            taus.loc[a, b] = kendall_tau(list(wide[a]), list(wide[b]))
    taus.index.name = "size"
    return stats, taus


# --- composition ----------------------------------------------------------------------------

def composition_variants(params: CompositionParams, groups: dict[str, str]
                         ) -> dict[str, dict[str, int]]:
    """`base` and one `<action>_<group>` per group present: source -> rows."""
    base = row_counts(params.base.size, params.base.sources)
    variants = {"base": base}
    for group in GROUPS:
        members = [s for s in base if groups[s] == group]
        if not members:
            continue
        variants[f"{params.action}_{group}"] = {
            s: (n if s not in members else (n // 2 if params.action == "halve" else 0))
            for s, n in base.items()}
    return variants


def run_composition(params: CompositionParams, seeds: list[int],
                    tables: dict[str, pd.DataFrame], groups: dict[str, str], train: Train
                    ) -> pd.DataFrame:
    results = []
    for variant, counts in composition_variants(params, groups).items():
        for seed in seeds:
            table = compose(tables, counts, seed, key="composition.base")
            result = train(f"{variant} seed={seed}", table, seed)
            results.append(_row(result, variant=variant, rows=len(table), seed=seed))
    return pd.DataFrame(results)


def composition_effects(points: pd.DataFrame) -> pd.DataFrame:
    """Per variant: the change of the average against the base, paired by seed (mean, std)."""
    base = points[points["variant"] == "base"].set_index("seed")[AVERAGE]
    rows = []
    for variant, group in points[points["variant"] != "base"].groupby("variant", sort=False):
        deltas = group.set_index("seed")[AVERAGE] - base
        rows.append({"variant": variant, "rows": int(group["rows"].iloc[0]),
                     "average": float(group[AVERAGE].mean()),
                     "delta_mean": float(deltas.mean()),
                     "delta_std": float(deltas.std()) if len(deltas) > 1 else float("nan"),
                     "seeds": len(deltas)})
    return pd.DataFrame(rows)


# --- incremental ------------------------------------------------------------------------------

@dataclass
class Step:
    step: int
    candidate: str
    mean: float
    std: float
    delta: float
    kept: bool


def run_incremental(params: IncrementalParams, seeds: list[int],
                    tables: dict[str, pd.DataFrame], train: Train
                    ) -> tuple[pd.DataFrame, pd.DataFrame, list[str], float]:
    """(every point, the trajectory, the kept candidates in order, the threshold used)."""
    counts = row_counts(params.base.size, params.base.sources)
    points = []

    def scores_of(label: str, counts: dict[str, int]) -> np.ndarray:
        values = []
        for seed in seeds:
            table = compose(tables, counts, seed, key="incremental")
            result = train(f"{label} seed={seed}", table, seed)
            points.append(_row(result, step=label, seed=seed, rows=len(table)))
            values.append(result["scores"][AVERAGE])
        return np.asarray(values, dtype=float)

    base = scores_of("base", counts)
    spread = float(base.std(ddof=1)) if len(base) > 1 else 0.0
    threshold = params.threshold if params.threshold is not None else spread
    trajectory = [Step(0, "base", float(base.mean()), spread, 0.0, True)]
    current, selected = float(base.mean()), []
    for k, candidate in enumerate(params.candidates, start=1):
        trial = {**counts, candidate: counts.get(candidate, 0) + params.rows_per_candidate}
        values = scores_of(f"+{candidate}", trial)
        mean = float(values.mean())
        kept = mean - current > threshold
        trajectory.append(Step(k, candidate, mean,
                               float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                               mean - current, kept))
        if kept:
            counts, current = trial, mean
            selected.append(candidate)
    return (pd.DataFrame(points), pd.DataFrame([s.__dict__ for s in trajectory]), selected,
            threshold)
