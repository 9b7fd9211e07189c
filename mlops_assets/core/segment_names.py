"""Segment ids and names a marketer can read, from the segments' RFM profiles.

The rule (deterministic, documented in the README):

1. Every customer scores 1 to 5 on recency, frequency, monetary and tenure (quintiles among
   all customers; recency reversed, so 5 = most recent). Where some customers have none of a
   feature (no repeat order, no spend in the last year; 65% of a real base), those score 1
   and the rest score 2 to 5 by quartiles among themselves: quintiles over a mass of tied
   zeros would give every active customer 4 or 5. A segment's R, F, M, T are its members'
   mean scores.
2. Segment ids rank value: the highest R + F + M score sum is segment 0 (ties: higher median
   monetary first). DBSCAN's noise keeps id -1 and is called "outliers".
3. The first rule that matches names the segment:
   new (T < 2 and R >= 3: joined recently, bought lately), champions (R >= 4, F >= 4),
   loyal (R >= 3, F >= 3), promising (R >= 3), at risk (F >= 3: frequent once, not lately),
   hibernating (R = 2), lost (R = 1).
4. Two segments with one name are told apart by spend ("high spend" / "low spend"); more than
   two are numbered by median spend ("loyal 1" spends most).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops_assets.core.cluster_quality import NOISE

PROFILE = {"R": "recency_days", "F": "frequency", "M": "monetary", "T": "tenure_days"}
NOISE_NAME = "outliers"


def mid_rank_pct(values: np.ndarray) -> np.ndarray:
    """Share of the non-missing values below each value, ties counted half (NaN stays NaN);
    pandas' average rank, from one sort and two binary searches (3x faster on 100k)."""
    known = np.sort(values[~np.isnan(values)])
    below = np.searchsorted(known, values, side="left")
    upto = np.searchsorted(known, values, side="right")
    pct = (below + upto) / (2.0 * max(len(known), 1))
    return np.where(np.isnan(values), np.nan, pct)


def member_scores(features: pd.DataFrame) -> pd.DataFrame:
    """Each customer's 1-5 score on R, F, M and T (mid-ranks, so ties share a score; recency
    reversed; a missing value scores 1; zero-inflated F and M as the module says)."""
    out = {}
    for key, column in PROFILE.items():
        values = features[column].to_numpy(dtype=float)
        if key in ("F", "M") and (values <= 0).any() and (values > 0).any():
            positive = np.where(values > 0, values, np.nan)
            score = np.clip(2 + np.floor(4 * mid_rank_pct(positive)), 2, 5)
            out[key] = np.where(values > 0, score, 1.0)
            continue
        pct = mid_rank_pct(-values if key == "R" else values)
        out[key] = np.nan_to_num(np.clip(1 + np.floor(5 * pct), 1, 5), nan=1.0)
    return pd.DataFrame(out, index=features.index)


def rfm_scores(features: pd.DataFrame, labels: np.ndarray, members: pd.DataFrame) -> pd.DataFrame:
    """Per cluster label (noise excluded): size, median monetary and the mean member score
    on R, F, M and T (a segment of half the customers cannot score like its best tenth)."""
    frame = members.assign(_label=np.asarray(labels), median_monetary=features["monetary"].to_numpy())
    frame = frame[frame["_label"] != NOISE]
    grouped = frame.groupby("_label")
    table = grouped[list(PROFILE)].mean()
    table["median_monetary"] = grouped["median_monetary"].median()
    table.insert(0, "size", grouped.size())
    return table.rename_axis("label").reset_index()


def rule_name(r: float, f: float, t: float) -> str:
    if r >= 3 and t < 2:
        return "new"
    if r >= 4 and f >= 4:
        return "champions"
    if r >= 3 and f >= 3:
        return "loyal"
    if r >= 3:
        return "promising"
    if f >= 3:
        return "at risk"
    return "hibernating" if r >= 2 else "lost"


def name_segments(
    features: pd.DataFrame, labels: np.ndarray, members: pd.DataFrame | None = None
) -> tuple[dict[int, int], dict[int, str]]:
    """(cluster label -> segment id, segment id -> name), following the module's rule;
    `members` are the customers' member_scores when already computed."""
    members = member_scores(features) if members is None else members
    scores = rfm_scores(features, labels, members)
    if scores.empty:
        return ({NOISE: NOISE}, {NOISE: NOISE_NAME})
    scores["value"] = scores["R"] + scores["F"] + scores["M"]
    scores = scores.sort_values(["value", "median_monetary"], ascending=False, kind="stable")
    scores["segment_id"] = np.arange(len(scores))
    scores["name"] = [rule_name(r, f, t) for r, f, t in scores[["R", "F", "T"]].itertuples(index=False)]
    names = {}
    for name, group in scores.groupby("name", sort=False):
        by_spend = group.sort_values("median_monetary", ascending=False, kind="stable")
        if len(by_spend) == 1:
            suffixes = [""]
        elif len(by_spend) == 2:
            suffixes = [" (high spend)", " (low spend)"]
        else:
            suffixes = [f" {i}" for i in range(1, len(by_spend) + 1)]
        for sid, suffix in zip(by_spend["segment_id"], suffixes, strict=True):
            names[int(sid)] = name + suffix
    relabel = dict(zip(scores["label"].astype(int), scores["segment_id"].astype(int), strict=True))
    if (np.asarray(labels) == NOISE).any():
        relabel[NOISE], names[NOISE] = NOISE, NOISE_NAME
    return relabel, dict(sorted(names.items()))


def segment_profile(
    features: pd.DataFrame,
    segment_ids: np.ndarray,
    names: dict[int, str],
    columns: list[str],
    members: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per segment: size, share of customers, revenue share (of net revenue over the last 365
    days, `monetary`), mean of each numeric feature, and the mean R/F/M/T scores that named it."""
    frame = features[columns].assign(segment_id=segment_ids)
    grouped = frame.groupby("segment_id")
    table = grouped[columns].mean().add_prefix("mean_")
    table.insert(0, "customers", grouped.size())
    table.insert(1, "share", table["customers"] / len(frame))
    total = frame["monetary"].sum()
    table.insert(2, "revenue_share", grouped["monetary"].sum() / total if total else np.nan)
    members = member_scores(features) if members is None else members
    scores = members.groupby(np.asarray(segment_ids)).mean().add_suffix("_score")
    table = table.join(scores)
    table.insert(0, "segment_name", [names[int(i)] for i in table.index])
    return table.rename_axis("segment_id").reset_index()
