"""SAIL-VL's SFT data experiments, each a grid of points and an analysis on the engine
(`engine.experiment`):

- quality: train on `size` rows of each candidate alone, at every size, and rank;
- composition: halve (or drop) one group of a base mixture at a time;
- incremental (Individual Select): add candidates to a base pool one at a time, keeping one
  when a paired one-sided t-test over seeds shows its gain above `min_gain` (`keeps`);
- schedule: the curriculum (its stages in order) against all-in-one (one stage on the same
  rows, shuffled) at rising SFT data sizes, both curves fitted.

Tables are built so that shared inputs are identical: a source's rows come from one
permutation per (source, seed), and a table is its sources' first rows, so the composition's
base and the incremental search's base are the same table (and the same stored point).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sail_pipeline.engine.experiment import Grid, Point
from sail_pipeline.errors import UserError
from sail_pipeline.experiments.stats import SeedEstimate, seed_interval
from sail_pipeline.identity import stable_hash, stable_int
from sail_pipeline.schema import GROUPS
from sail_pipeline.schema.selection import (
    CandidateQualityParams,
    CompositionParams,
    IncrementalParams,
    ScheduleParams,
)
from sail_pipeline.schema.sft import MixtureParams
from sail_pipeline.schema.training import TrainParams
from sail_pipeline.sft_data.mixture import row_counts

AVERAGE = "sft/average"
CURRICULUM, ALL_IN_ONE = "curriculum", "all_in_one"


@dataclass(frozen=True, eq=False)
class Phase:
    """One stage of a point's SFT: the registry stage it trains as, its settings, its rows."""

    stage: str
    train: TrainParams
    table: pd.DataFrame


# label, table (one stage with `selection.train`) or phases (in order), seed, fields -> the
# engine's point (`selection.point.SftPoints`)
MakePoint = Callable[..., Point]


class SelectionSizeError(UserError, ValueError):
    """An experiment asks a candidate for more rows than it has (raised before training)."""


def _stream(source: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, stable_int(source)])


def compose(tables: dict[str, pd.DataFrame], counts: dict[str, int], seed: int,
            key: str = "counts") -> pd.DataFrame:
    """The first `counts[s]` rows of each source's seeded permutation, shuffled by seed.

    Prefixes of one permutation make tables nested: halving a group keeps a subset of the
    base's rows, and a base plus a candidate contains the base.
    """
    return _shuffled([_rows(tables, source, 0, counts[source], seed, key)
                      for source in sorted(counts) if counts[source]], seed)


def _rows(tables: dict[str, pd.DataFrame], source: str, start: int, stop: int, seed: int,
          key: str) -> pd.DataFrame:
    """Rows start..stop of `source`'s seeded permutation, in table order, ids made unique."""
    table = tables[source]
    if stop > len(table):
        raise SelectionSizeError(f"selection.{key}: {source} has {len(table)} rows, "
                                 f"{stop} were asked for")
    order = _stream(source, seed).permutation(len(table))[start:stop]
    rows = table.iloc[np.sort(order)].assign(source=source)
    return rows.assign(id=source + "/" + rows["id"].astype(str))


def _shuffled(parts: list[pd.DataFrame], seed: int) -> pd.DataFrame:
    """The rows in an order fixed by the seed and each row's id: two tables of one seed list
    the rows they share in the same order, so pairing two variants by seed compares their
    rows, not the order they came in."""
    rows = pd.concat(parts, ignore_index=True)
    keys = np.array([stable_hash(f"{seed}:{row_id}") for row_id in rows["id"]], dtype=np.uint64)
    return rows.iloc[np.argsort(keys, kind="stable")].reset_index(drop=True)


# --- quality --------------------------------------------------------------------------------

def quality_points(params: CandidateQualityParams, seeds: list[int]) -> list[tuple[str, int, int]]:
    return [(c, n, s) for c in params.candidates for n in params.sizes for s in seeds]


def check_sizes(quality: CandidateQualityParams, composition: CompositionParams,
                incremental: IncrementalParams, rows: dict[str, int],
                schedule: ScheduleParams | None = None,
                mixtures: dict[str, MixtureParams] | None = None) -> None:
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
    for source, n in (schedule_totals(schedule.sizes[-1], mixtures) if schedule else {}).items():
        if n > rows[source]:
            problems.append(f"selection.schedule.sizes: the largest size, {schedule.sizes[-1]}, "
                            f"draws {n} rows of {source}, which has {rows[source]}")
    for candidate in incremental.candidates:
        wanted = base.get(candidate, 0) + incremental.rows_per_candidate
        if wanted > rows[candidate]:
            problems.append(f"selection.incremental.rows_per_candidate: {candidate} has "
                            f"{rows[candidate]} rows, {wanted} would be drawn")
    if problems:
        raise SelectionSizeError("; ".join(problems))


def quality_grid(params: CandidateQualityParams, seeds: list[int],
                 tables: dict[str, pd.DataFrame], make: MakePoint) -> Grid:
    for candidate, size, seed in quality_points(params, seeds):
        table = compose(tables, {candidate: size}, seed, key="quality.sizes")
        yield make(f"{candidate} n={size} seed={seed}", table, seed, candidate=candidate,
                   size=size, seed=seed)


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


def tau_intervals(points: pd.DataFrame, level: float = 0.95, resamples: int = 1000,
                  rng_seed: int = 0) -> pd.DataFrame:
    """Kendall's τ between the candidates' rankings at every two sizes, with a percentile
    bootstrap interval that resamples whole seeds (a seed's subsets are nested across the
    sizes, so the seed is the unit; with 3 seeds there are only 10 distinct resamples, and
    the interval is rough). Columns: size_a, size_b, tau, tau_lo, tau_hi, seeds."""
    seeds = sorted(points["seed"].unique())
    sizes = sorted(points["size"].unique())
    candidates = sorted(points["candidate"].unique())
    cube = np.stack([points[points["seed"] == seed].pivot_table(
        index="candidate", columns="size", values=AVERAGE).reindex(
        index=candidates, columns=sizes).to_numpy(dtype=float) for seed in seeds])
    rng = np.random.default_rng(rng_seed)
    draws = [np.nanmean(cube[rng.integers(0, len(seeds), len(seeds))], axis=0)
             for _ in range(resamples)] if len(seeds) > 1 else []
    full = np.nanmean(cube, axis=0)
    tail = 100 * (1 - level) / 2
    rows = []
    for i, a in enumerate(sizes):
        for j, b in enumerate(sizes):
            if j <= i:
                continue
            taus = np.array([kendall_tau(list(d[:, i]), list(d[:, j])) for d in draws])
            taus = taus[np.isfinite(taus)]
            lo, hi = np.percentile(taus, [tail, 100 - tail]) if taus.size else (np.nan, np.nan)
            rows.append({"size_a": int(a), "size_b": int(b),
                         "tau": kendall_tau(list(full[:, i]), list(full[:, j])),
                         "tau_lo": float(lo), "tau_hi": float(hi), "seeds": len(seeds)})
    return pd.DataFrame(rows, columns=["size_a", "size_b", "tau", "tau_lo", "tau_hi", "seeds"])


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


def composition_grid(params: CompositionParams, seeds: list[int],
                     tables: dict[str, pd.DataFrame], groups: dict[str, str], make: MakePoint
                     ) -> Grid:
    for variant, counts in composition_variants(params, groups).items():
        for seed in seeds:
            table = compose(tables, counts, seed, key="composition.base")
            yield make(f"{variant} seed={seed}", table, seed, variant=variant, rows=len(table),
                       seed=seed)


def composition_effects(points: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Per variant: the change of the average against the base, paired by seed (mean, std,
    and a t-interval over seeds), and the same per 100 rows removed, so that groups of
    different sizes compare like with like."""
    base = points[points["variant"] == "base"].set_index("seed")
    rows = []
    for variant, group in points[points["variant"] != "base"].groupby("variant", sort=False):
        deltas = (group.set_index("seed")[AVERAGE] - base[AVERAGE]).dropna()
        removed = int(base["rows"].iloc[0]) - int(group["rows"].iloc[0])
        change = seed_interval(deltas.to_numpy(), level)
        per_100 = 100.0 / removed if removed else float("nan")
        rows.append({"variant": variant, "rows": int(group["rows"].iloc[0]),
                     "rows_removed": removed, "average": float(group[AVERAGE].mean()),
                     "delta_mean": change.mean,
                     "delta_std": float(deltas.std()) if len(deltas) > 1 else float("nan"),
                     "delta_lo": change.lo, "delta_hi": change.hi,
                     "delta_per_100_rows": change.mean * per_100,
                     "delta_per_100_rows_lo": change.lo * per_100,
                     "delta_per_100_rows_hi": change.hi * per_100,
                     "seeds": change.seeds})
    return pd.DataFrame(rows)


# --- incremental ------------------------------------------------------------------------------

@dataclass
class Step:
    step: int
    candidate: str
    mean: float
    std: float
    delta: float  # the mean gain over the kept pool, paired by seed
    delta_lo: float  # its one-sided (1 - alpha) lower bound
    kept: bool


def keeps(current: np.ndarray, trial: np.ndarray, params: IncrementalParams,
          alpha: float) -> tuple[bool, SeedEstimate]:
    """Individual Select's keep rule: the candidate's gain over the kept pool, paired by seed
    (the same seed draws the same base rows in the same order), is kept when a one-sided
    paired t-test at `alpha` shows it above `min_gain`: its lower (1 - alpha) bound is. With
    one seed there is no test, and nothing is kept."""
    gain = seed_interval(np.asarray(trial, float) - np.asarray(current, float), 1 - 2 * alpha)
    return bool(gain.lo > params.min_gain), gain


def incremental_grid(params: IncrementalParams, seeds: list[int],
                     tables: dict[str, pd.DataFrame], make: MakePoint, alpha: float) -> Grid:
    """The base on every seed, then each candidate added to what was kept so far; a candidate
    is kept by `keeps`."""
    counts = row_counts(params.base.size, params.base.sources)

    def trial(label: str, counts: dict[str, int]) -> Generator[Point, dict, np.ndarray]:
        values = []
        for seed in seeds:
            table = compose(tables, counts, seed, key="incremental")
            result = yield make(f"{label} seed={seed}", table, seed, step=label, seed=seed,
                                rows=len(table))
            values.append(result["scores"][AVERAGE])
        return np.asarray(values, dtype=float)

    current = yield from trial("base", counts)
    for candidate in params.candidates:
        tried = {**counts, candidate: counts.get(candidate, 0) + params.rows_per_candidate}
        values = yield from trial(f"+{candidate}", tried)
        if keeps(current, values, params, alpha)[0]:
            counts, current = tried, values


def incremental_trajectory(points: pd.DataFrame, params: IncrementalParams, alpha: float
                           ) -> tuple[pd.DataFrame, list[str]]:
    """(the trajectory, the kept candidates in order) of the grid's points, decided as the
    grid decided them (by seed: each step's values in seed order)."""
    steps = list(dict.fromkeys(points["step"]))
    scores = {step: points[points["step"] == step].sort_values("seed")[AVERAGE]
              .to_numpy(dtype=float) for step in steps}
    current = scores["base"]
    spread = float(current.std(ddof=1)) if len(current) > 1 else 0.0
    trajectory = [Step(0, "base", float(current.mean()), spread, 0.0, float("nan"), True)]
    selected = []
    for k, step in enumerate(steps[1:], start=1):
        values = scores[step]
        kept, gain = keeps(current, values, params, alpha)
        trajectory.append(Step(k, step.removeprefix("+"), float(values.mean()),
                               float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                               gain.mean, gain.lo, kept))
        if kept:
            current = values
            selected.append(step.removeprefix("+"))
    return pd.DataFrame([s.__dict__ for s in trajectory]), selected


# --- schedule: curriculum vs all-in-one -------------------------------------------------------

def schedule_counts(size: int, mixtures: dict[str, MixtureParams]) -> dict[str, dict[str, int]]:
    """stage -> source -> rows: `size` split across the stages as the mixtures' sizes are,
    then each stage's share across its sources."""
    total = sum(m.size for m in mixtures.values())
    stages = row_counts(size, {stage: m.size / total for stage, m in mixtures.items()})
    return {stage: row_counts(stages[stage], mixtures[stage].sources) for stage in mixtures}


def schedule_totals(size: int, mixtures: dict[str, MixtureParams]) -> dict[str, int]:
    """source -> rows over every stage at `size`."""
    totals: Counter[str] = Counter()
    for counts in schedule_counts(size, mixtures).values():
        totals.update(counts)
    return dict(totals)


def schedule_tables(size: int, mixtures: dict[str, MixtureParams],
                    tables: dict[str, pd.DataFrame], seed: int) -> dict[str, pd.DataFrame]:
    """stage -> its rows, in stage order. A source used by several stages gives each stage the
    next rows of one seeded permutation, so no row appears twice and the stages' union (the
    all-in-one table) is a prefix of every source: the tables at a larger size contain it."""
    taken: Counter[str] = Counter()
    out = {}
    for stage, counts in schedule_counts(size, mixtures).items():
        parts = []
        for source in sorted(counts):
            if counts[source]:
                parts.append(_rows(tables, source, taken[source], taken[source] + counts[source],
                                   seed, "schedule.sizes"))
                taken[source] += counts[source]
        out[stage] = _shuffled(parts, seed) if parts else pd.DataFrame()
    return out


def schedule_phases(size: int, seed: int, mixtures: dict[str, MixtureParams],
                    stage_train: dict[str, TrainParams], tables: dict[str, pd.DataFrame]
                    ) -> dict[str, list[Phase]]:
    """{"curriculum": one phase per stage with rows, "all_in_one": one phase on their union
    (the first stage's settings)}."""
    per_stage = {stage: table for stage, table in
                 schedule_tables(size, mixtures, tables, seed).items() if len(table)}
    first = next(iter(mixtures))
    return {CURRICULUM: [Phase(stage, stage_train[stage], table)
                         for stage, table in per_stage.items()],
            ALL_IN_ONE: [Phase(first, stage_train[first],
                               _shuffled(list(per_stage.values()), seed))]}


def schedule_grid(params: ScheduleParams, seeds: list[int], mixtures: dict[str, MixtureParams],
                  stage_train: dict[str, TrainParams], tables: dict[str, pd.DataFrame],
                  make: MakePoint) -> Grid:
    """One point per (schedule, size, seed), in the columns the scaling fit reads (`variant`,
    `n`, `seed`, the scores)."""
    for size in params.sizes:
        for seed in seeds:
            for variant, phases in schedule_phases(size, seed, mixtures, stage_train,
                                                   tables).items():
                yield make(f"{variant} n={size} seed={seed}", phases, seed, variant=variant,
                           n=size, seed=seed, stages="+".join(p.stage for p in phases))
