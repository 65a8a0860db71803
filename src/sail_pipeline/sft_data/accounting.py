"""Where every candidate row went: kept (train or held out) or rejected, by reason."""

from __future__ import annotations

import pandas as pd

from sail_pipeline.schema import CANDIDATES


def candidate_table(train: dict[str, pd.DataFrame], heldout: dict[str, pd.DataFrame],
                    rejected: dict[str, pd.DataFrame], groups: dict[str, str]) -> pd.DataFrame:
    """One row per candidate set: its group, difficulty, planted harm, kept and rejected rows,
    one column per rejection reason, and the mean length of a kept row in tokens."""
    reasons = sorted({r for table in rejected.values() for r in table["reason"]})
    rows = []
    for name in train:
        spec = CANDIDATES.get(name)
        counts = rejected[name]["reason"].value_counts()
        kept = len(train[name]) + len(heldout[name])
        rows.append({
            "set": name, "group": groups[name],
            "difficulty": spec.difficulty if spec else None,
            "planted_harm": (spec.harm or "") if spec else "",
            "source": "built-in" if spec else "user",
            "rows": kept + len(rejected[name]), "kept_train": len(train[name]),
            "kept_heldout": len(heldout[name]), "rejected": len(rejected[name]),
            **{f"rejected_{r}": int(counts.get(r, 0)) for r in reasons},
            "mean_tokens": float(train[name]["n_tokens"].mean()) if len(train[name]) else 0.0,
        })
    return pd.DataFrame(rows)


def rejection_table(rejected: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every rejected row of every set: `set`, `split`, `id`, `reason`."""
    parts = [table.assign(set=name) for name, table in rejected.items()]
    columns = ["set", "split", "id", "reason"]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns].astype(str)


def mixture_metrics(mixtures: pd.DataFrame) -> dict[str, float]:
    """`sft_data/<stage>/<group>_share` and `sft_data/<stage>/rows`, for the run's MLflow page."""
    train = mixtures[mixtures["split"] == "train"]
    metrics = {f"sft_data/{stage}/rows": float(rows)
               for stage, rows in train.groupby("stage")["rows"].sum().items()}
    for (stage, group), share in train.groupby(["stage", "group"])["share"].sum().items():
        metrics[f"sft_data/{stage}/{group}_share"] = float(share)
    return metrics
