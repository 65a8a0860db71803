"""A stage's mixture: `size` rows drawn from candidate sets in fixed proportions, reproducibly.

Row counts per source are the largest-remainder rounding of `size * proportion`, so they sum to
`size` exactly. A source draws without replacement while it can; a source smaller than its
share is repeated whole and then topped up at random, and the accounting says how many rows
were repeats. Ids become `<source>/<id>` (`#<k>` on the k-th repeat), so mixing sets never
makes two rows share an id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sail_pipeline.errors import UserError
from sail_pipeline.identity import stable_int
from sail_pipeline.schema import CANDIDATES, MixtureParams
from sail_pipeline.sft_data.validate import CANDIDATE_COLUMNS


class EmptySource(UserError, ValueError):
    """A mixture asks for rows of a set that has none it can use."""


def row_counts(size: int, proportions: dict[str, float]) -> dict[str, int]:
    """`size` split by `proportions` in whole rows that sum to `size` (largest remainder)."""
    exact = {name: size * share for name, share in proportions.items()}
    counts = {name: math.floor(value) for name, value in exact.items()}
    by_remainder = sorted(exact, key=lambda n: (-(exact[n] - counts[n]), n))
    for name in by_remainder[:size - sum(counts.values())]:
        counts[name] += 1
    return counts


@dataclass(frozen=True)
class MixtureLine:
    """What one source put into one mixture (a row of `sft_mixture_accounting`)."""

    stage: str
    split: str
    source: str
    group: str
    proportion: float
    rows: int
    available: int
    too_long: int
    repeated: int
    tokens: int


def draw(source: str, table: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """`n` rows of `table`: a random subset, or every row (repeated) plus a random top-up."""
    if n == 0 or table.empty:
        return table.iloc[:0].assign(source=source)
    whole, extra = divmod(n, len(table))
    parts, ids = [], []
    for k in range(whole):
        parts.append(table)
        ids += [f"{source}/{i}" + (f"#{k}" if k else "") for i in table["id"]]
    picked = table.iloc[np.sort(rng.choice(len(table), size=extra, replace=False))]
    parts.append(picked)
    ids += [f"{source}/{i}" + (f"#{whole}" if whole else "") for i in picked["id"]]
    return pd.concat(parts, ignore_index=True).assign(id=ids, source=source)


def mix(stage: str, split: str, mixture: MixtureParams, size: int,
        tables: dict[str, pd.DataFrame], groups: dict[str, str], max_seq_len: int, seed: int
        ) -> tuple[pd.DataFrame, list[MixtureLine]]:
    """The mixture's rows, shuffled, and one accounting line per source."""
    counts = row_counts(size, mixture.sources)
    parts, lines = [], []
    for offset, (source, n) in enumerate(counts.items()):
        table = tables[source]
        fits = table[table["n_tokens"] <= max_seq_len]
        if n and fits.empty:
            raise EmptySource(f"sft.mixtures.{stage}.sources.{source}: no {split} row of the set "
                              f"is usable ({len(table)} kept, none within max_seq_len "
                              f"{max_seq_len}); drop the source or fix the set")
        # One stream per (seed, stage, source): adding a source leaves the others' rows as
        # they were.
        rng = np.random.default_rng([seed, stable_int(stage), stable_int(split), offset,
                                     stable_int(source)])
        drawn = draw(source, fits, n, rng)
        parts.append(drawn)
        lines.append(MixtureLine(stage, split, source, groups[source], mixture.sources[source],
                                 len(drawn), len(fits), len(table) - len(fits),
                                 max(0, len(drawn) - len(fits)), int(drawn["n_tokens"].sum())))
    rows = pd.concat(parts, ignore_index=True)
    rows = rows.sample(frac=1.0, random_state=np.random.default_rng([seed, stable_int(stage)]))
    return rows[[*CANDIDATE_COLUMNS, "source", "n_tokens"]].reset_index(drop=True), lines




def group_of(name: str, user_groups: dict[str, str]) -> str:
    return CANDIDATES[name].group if name in CANDIDATES else user_groups[name]


def accounting_table(lines: list[MixtureLine]) -> pd.DataFrame:
    table = pd.DataFrame([line.__dict__ for line in lines])
    totals = table.groupby(["stage", "split"])["rows"].transform("sum")
    return table.assign(share=table["rows"] / totals.where(totals > 0, 1))
