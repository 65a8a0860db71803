"""The caption filter: rules over the computed signals, every rejection with its reasons.

A row is (id, caption source). It is rejected when its caption cannot be used at all (missing,
not UTF-8, too long, its image undecodable), whatever the settings; then, with the filter on,
by each threshold, by the judge (SAIL-Caption2 drops a score below 3), and last by DataComp's
top-fraction rule over what the other rules kept. Every failed rule is recorded, not only the
first, so the funnel counts each rule's own catch.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sail_pipeline.schema.quality import FilterParams

UNUSABLE_TEXT = ("missing_caption", "not_utf8", "not_text", "too_long")


class FilterBug(RuntimeError):
    """kept + rejected != input: a bug of the filter, never bad data."""


def _reasons_of(signals: pd.DataFrame, params: FilterParams) -> list[list[str]]:
    n = len(signals)
    reasons: list[list[str]] = [[] for _ in range(n)]

    def flag(mask: np.ndarray, reason: str | list[str]) -> None:
        for i in np.flatnonzero(mask):
            reasons[i].append(reason if isinstance(reason, str) else reason[i])

    text_error = signals["text_error"].fillna("").to_numpy(dtype=object)
    flag(np.isin(text_error, UNUSABLE_TEXT), list(text_error))
    image_error = signals["image_error"].fillna("").to_numpy(dtype=object)
    flag(image_error != "", [f"image: {e}" for e in image_error])
    if not params.enabled:
        return reasons
    for signal, rule in params.thresholds.items():
        values = signals[signal].to_numpy(dtype=float)
        if rule.min is not None:
            flag(~(values >= rule.min), f"{signal}<{rule.min:g}")
        if rule.max is not None:
            flag(~(values <= rule.max), f"{signal}>{rule.max:g}")
    if params.judge_min_score is not None:
        judge_error = signals["judge_error"].fillna("").to_numpy(dtype=object)
        unusable = np.isin(text_error, UNUSABLE_TEXT) | (image_error != "")
        flag((judge_error != "") & ~unusable, [f"judge: {e}" for e in judge_error])
        for criterion in ("vir", "ita"):
            values = signals[f"judge_{criterion}"].to_numpy(dtype=float)
            flag(values < params.judge_min_score,
                 f"judge_{criterion}<{params.judge_min_score}")
    if params.top_fraction is not None:
        rule = params.top_fraction
        passed = np.array([not r for r in reasons])
        for source in signals["source"].unique():
            rows = np.flatnonzero(passed & (signals["source"].to_numpy() == source))
            keep = math.ceil(rule.keep * len(rows))
            values = signals[rule.signal].to_numpy(dtype=float)[rows]
            # Stable descending order; a NaN ranks last.
            order = rows[np.argsort(-np.nan_to_num(values, nan=-np.inf), kind="stable")]
            below = np.zeros(n, dtype=bool)
            below[order[keep:]] = True
            flag(below, f"not_top_{rule.keep:g}_{rule.signal}")
    return reasons


def decide(signals: pd.DataFrame, params: FilterParams
           ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(decisions: id, source, kept, reasons; rejected rows; funnel per source and rule)."""
    reasons = _reasons_of(signals.reset_index(drop=True), params)
    decisions = pd.DataFrame({"id": signals["id"].to_numpy(),
                              "source": signals["source"].to_numpy(),
                              "kept": [not r for r in reasons],
                              "reasons": ["; ".join(r) for r in reasons]})
    rejected = decisions[~decisions["kept"]].reset_index(drop=True)
    kept = int(decisions["kept"].sum())
    if kept + len(rejected) != len(signals):
        raise FilterBug(f"kept {kept} + rejected {len(rejected)} != input {len(signals)}")
    return decisions, rejected, funnel(decisions, reasons, params)


def _rule(reason: str) -> str:
    # "image: undecodable: …" and "judge: malformed: '…'" count under their family.
    return reason.split(":")[0] if ":" in reason else reason


def funnel(decisions: pd.DataFrame, reasons: list[list[str]], params: FilterParams
           ) -> pd.DataFrame:
    """One row per (source, step): input, each rule's catch (zeros included), rejected, kept."""
    rules = list(UNUSABLE_TEXT) + ["image"]
    if params.enabled:
        for signal, rule in params.thresholds.items():
            rules += [f"{signal}<{rule.min:g}"] if rule.min is not None else []
            rules += [f"{signal}>{rule.max:g}"] if rule.max is not None else []
        if params.judge_min_score is not None:
            rules += ["judge", *(f"judge_{c}<{params.judge_min_score}" for c in ("vir", "ita"))]
        if params.top_fraction is not None:
            rules.append(f"not_top_{params.top_fraction.keep:g}_{params.top_fraction.signal}")
    rows = []
    for source in decisions["source"].unique():
        mine = np.flatnonzero(decisions["source"].to_numpy() == source)
        caught = pd.Series([_rule(r) for i in mine for r in set(reasons[i])]).value_counts()
        rows.append((source, "input", len(mine)))
        rows += [(source, rule, int(caught.get(rule, 0))) for rule in rules]
        kept = int(decisions["kept"].to_numpy()[mine].sum())
        rows += [(source, "rejected", len(mine) - kept), (source, "kept", kept)]
    return pd.DataFrame(rows, columns=["source", "step", "count"])
