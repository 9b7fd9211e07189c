"""Data drift between a reference and a current sample, column by column, with Evidently's
published defaults so users can cross-check:

- numeric columns: Kolmogorov-Smirnov (drift when p < 0.05) while the reference has at most
  1000 rows, else the Wasserstein distance divided by the reference's standard deviation
  (drift at >= 0.1);
- categorical columns: chi-square goodness of fit against the reference's shares (p < 0.05)
  while small, else the Jensen-Shannon distance (>= 0.1);
- PSI always (10 quantile bins of the reference for numbers, categories for categories;
  0.1 moderate, 0.2 significant), and the dataset drifts when at least half its columns do.

Speed: a `Reference` keeps each numeric column sorted with its PSI bin edges, so a monitoring
run sorts only the current values. From two sorted samples the Wasserstein distance is one
pass over the merged quantile grid (the grid points i/n and j/m are merged as integers,
no float sort, no argsort), and PSI is two binary searches per bin edge. Every statistic is
tested against scipy's value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

PSI_FLOOR = 1e-4  # a bin empty on one side counts as this share (Evidently's convention)
COLUMNS = ["column", "kind", "method", "statistic", "p_value", "psi", "threshold", "drifted"]


@dataclass(frozen=True)
class DriftSettings:
    small_sample: int = 1000  # reference rows up to which the statistical tests are used
    ks_p_value: float = 0.05
    wasserstein_threshold: float = 0.1  # Wasserstein distance / reference standard deviation
    chi2_p_value: float = 0.05
    jensen_shannon_threshold: float = 0.1
    psi_bins: int = 10
    psi_moderate: float = 0.1
    psi_significant: float = 0.2
    drift_share: float = 0.5  # share of drifted columns at which the dataset counts as drifted


@dataclass
class NumericReference:
    values: np.ndarray  # sorted, nulls dropped
    std: float
    edges: np.ndarray  # interior PSI bin edges (reference quantiles, deduplicated)
    shares: np.ndarray  # reference share per PSI bin


@dataclass
class CategoricalReference:
    counts: pd.Series  # per category, nulls dropped


@dataclass
class Reference:
    """What a report needs from the reference, computed once and reused across runs."""

    columns: dict[str, NumericReference | CategoricalReference]
    rows: int
    settings: DriftSettings = field(default_factory=DriftSettings)

    @classmethod
    def of(cls, frame: pd.DataFrame, settings: DriftSettings | None = None) -> Reference:
        settings = settings or DriftSettings()
        columns = {}
        for name in frame.columns:
            col = frame[name]
            if is_numeric(col):
                values = np.sort(col.dropna().to_numpy(dtype=float))
                edges = psi_edges(values, settings.psi_bins)
                columns[str(name)] = NumericReference(
                    values, float(np.std(values, ddof=1)), edges, bin_shares(values, edges)
                )
            else:
                columns[str(name)] = CategoricalReference(category_counts(col))
        return cls(columns, len(frame), settings)


def is_numeric(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def psi_edges(sorted_values: np.ndarray, bins: int) -> np.ndarray:
    """Interior quantiles of an already sorted sample (numpy's default linear rule, read off
    by index instead of re-partitioning the array)."""
    n = len(sorted_values)
    if n == 0:
        return np.array([])
    pos = np.linspace(0, 1, bins + 1)[1:-1] * (n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    qs = sorted_values[lo] + (pos - lo) * (sorted_values[hi] - sorted_values[lo])
    return np.unique(qs)


def bin_shares(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of values in (-inf, e1], (e1, e2], ..., (ek, inf), from binary searches."""
    counts = np.diff(
        np.concatenate([[0], np.searchsorted(sorted_values, edges, side="right"), [len(sorted_values)]])
    )
    return counts / max(len(sorted_values), 1)


def category_counts(col: pd.Series) -> pd.Series:
    """Counts per category (nulls dropped), labels as text; categorical columns count codes."""
    counts = col.value_counts(dropna=True, sort=False)
    counts.index = counts.index.astype(str)
    return counts[counts > 0].groupby(level=0).sum()


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    r = np.clip(reference, PSI_FLOOR, None)
    c = np.clip(current, PSI_FLOOR, None)
    return float(np.sum((c - r) * np.log(c / r)))


def wasserstein_sorted(u: np.ndarray, v: np.ndarray) -> float:
    """First Wasserstein distance of two sorted samples: the integral over p of
    |u quantile(p) - v quantile(p)|. The quantile functions step at i/n and j/m; scaled by
    n*m those grid points are i*m and j*n (exact in float64 below 2**53), and each point's
    rank in the merged grid and the other sample's quantile index follow in closed form, so
    there is no sort. Equal sizes share one grid: the mean absolute difference."""
    n, m = len(u), len(v)
    if n == m:
        return float(np.mean(np.abs(u - v)))
    i = np.arange(1, n + 1, dtype=np.float64) * m  # u's grid points
    j = np.arange(1, m + 1, dtype=np.float64) * n  # v's grid points
    v_at_u = np.ceil(i / n).astype(np.int64) - 1  # v's quantile index at u's points (= v points before)
    u_at_v = np.ceil(j / m).astype(np.int64) - 1
    pos_u = np.arange(n) + v_at_u
    pos_v = np.arange(m) + np.floor(j / m).astype(np.int64)  # a tie puts u's point first
    grid = np.empty(n + m)
    grid[pos_u], grid[pos_v] = i, j
    widths = np.diff(grid, prepend=0.0)
    total = widths[pos_u] @ np.abs(u - v[v_at_u]) + widths[pos_v] @ np.abs(u[u_at_v] - v)
    return float(total / (n * m))


def report_row(name, kind, method, statistic, p_value, shift, threshold, drifted) -> dict:
    """One row of a drift report, in COLUMNS order."""
    return dict(
        zip(COLUMNS, (name, kind, method, statistic, p_value, shift, threshold, bool(drifted)), strict=True)
    )


def _numeric(name: str, ref: NumericReference, current: pd.Series, s: DriftSettings, small: bool) -> dict:
    v = np.sort(current.dropna().to_numpy(dtype=float))
    shift = psi(ref.shares, bin_shares(v, ref.edges))
    if len(v) == 0 or len(ref.values) == 0:
        return report_row(name, "numeric", "none", np.nan, np.nan, shift, np.nan, False)
    if small:
        result = stats.ks_2samp(ref.values, v)
        stat, p = float(result.statistic), float(result.pvalue)
        return report_row(name, "numeric", "ks", stat, p, shift, s.ks_p_value, p < s.ks_p_value)
    distance = wasserstein_sorted(ref.values, v)
    normed = distance / ref.std if ref.std > 0 else (0.0 if distance == 0 else np.inf)
    threshold = s.wasserstein_threshold
    return report_row(
        name, "numeric", "wasserstein_normed", normed, np.nan, shift, threshold, normed >= threshold
    )


def _categorical(
    name: str, ref: CategoricalReference, current: pd.Series, s: DriftSettings, small: bool
) -> dict:
    cur = category_counts(current)
    cats = ref.counts.index.union(cur.index)
    r = ref.counts.reindex(cats, fill_value=0).to_numpy(dtype=float)
    c = cur.reindex(cats, fill_value=0).to_numpy(dtype=float)
    r_share, c_share = r / max(r.sum(), 1), c / max(c.sum(), 1)
    shift = psi(r_share, c_share)
    if small:
        expected = np.clip(r_share, PSI_FLOOR, None)
        expected = expected / expected.sum() * c.sum()
        result = stats.chisquare(c, expected)
        p = float(result.pvalue)
        stat = float(result.statistic)
        return report_row(
            name, "categorical", "chi_square", stat, p, shift, s.chi2_p_value, p < s.chi2_p_value
        )
    distance = float(jensenshannon(r_share, c_share))
    threshold = s.jensen_shannon_threshold
    return report_row(
        name, "categorical", "jensen_shannon", distance, np.nan, shift, threshold, distance >= threshold
    )


def drift_report(
    reference: pd.DataFrame | Reference, current: pd.DataFrame, settings: DriftSettings | None = None
) -> pd.DataFrame:
    """One row per column present in both: column, kind, method, statistic, p_value (tests
    only), psi, threshold, drifted."""
    if not isinstance(reference, Reference):
        reference = Reference.of(reference, settings)
    s = settings or reference.settings
    small = reference.rows <= s.small_sample
    rows = []
    for name, ref in reference.columns.items():
        if name not in current.columns:
            continue
        if isinstance(ref, NumericReference):
            rows.append(_numeric(name, ref, current[name], s, small))
        else:
            rows.append(_categorical(name, ref, current[name], s, small))
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["psi_level"] = pd.cut(
        table["psi"], [-np.inf, s.psi_moderate, s.psi_significant, np.inf], right=False,
        labels=["none", "moderate", "significant"],
    ).astype(str)  # fmt: skip
    return table


def dataset_drift(report: pd.DataFrame, settings: DriftSettings | None = None) -> tuple[bool, float]:
    """(drifted, share of drifted columns): drifted when the share reaches drift_share."""
    s = settings or DriftSettings()
    share = float(report["drifted"].mean()) if len(report) else 0.0
    return share >= s.drift_share, share


# rows per side below which a cross-validated classifier says nothing (CDNOW's one product has
# one feature row on each side: three folds cannot even be cut)
MIN_CLASSIFIER_ROWS = 30


@dataclass(frozen=True)
class ClassifierDrift:
    auc: float  # cross-validated ROC AUC of telling current rows from reference rows
    threshold: float
    drifted: bool
    rows: int  # rows per side the classifier saw
    top_features: list[tuple[str, float]]  # columns by their own separating power (2|AUC - 0.5|)


def classifier_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    threshold: float = 0.55,
    max_rows: int = 20_000,
    folds: int = 3,
    seed: int = 0,
) -> ClassifierDrift:
    """Multivariate drift by a domain classifier: gradient-boosted trees learn to tell current
    rows from reference rows; a cross-validated AUC near 0.5 means they cannot (no drift), and
    at least `threshold` means the joint distribution moved, even when every column's own
    distribution did not (a changed correlation). Each side is sampled to `max_rows`."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    columns = [c for c in reference.columns if c in current.columns]
    rng = np.random.default_rng(seed)
    n = min(len(reference), len(current), max_rows)
    ref = reference[columns].iloc[rng.choice(len(reference), n, replace=False)]
    cur = current[columns].iloc[rng.choice(len(current), n, replace=False)]
    both = pd.concat([ref, cur], ignore_index=True)
    categorical = [not is_numeric(both[c]) for c in columns]
    for c, is_cat in zip(columns, categorical, strict=True):
        if is_cat:  # codes over both sides; trees split on them natively
            both[c] = both[c].astype("category").cat.codes.replace(-1, np.nan)
    y = np.r_[np.zeros(n), np.ones(n)]
    # early stopping on a held-out tenth: samples it cannot tell apart stop after a few
    # rounds (3-5x faster on the daily refresh); separable ones grow until the loss stops falling
    model = HistGradientBoostingClassifier(
        max_iter=100, categorical_features=np.array(categorical), early_stopping=True, random_state=seed
    )
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    proba = cross_val_predict(model, both, y, cv=cv, method="predict_proba")[:, 1]
    auc = float(roc_auc_score(y, proba))
    # which columns separate the two samples: single-column AUC, as a readable ranking
    single = {c: abs(float(roc_auc_score(y, both[c].fillna(both[c].median()))) - 0.5) * 2 for c in columns}
    top = sorted(single.items(), key=lambda kv: -kv[1])[:5]
    return ClassifierDrift(auc, threshold, auc >= threshold, n, top)
