"""Median forecasts for every product in every store: one global gradient-boosted model over all
product-store series (the approach that won the M5 accuracy competition), trained on absolute
error, so its forecast is each day's conditional median.

Why a median beside the reconciled mean: most product-store days sell nothing (84% on the
generated catalog), and on such series the forecast that minimises absolute error (what MASE
measures) is the median, often zero, while the one sums need (replenishment totals, coherence
with the store and the total) is the mean. The catalog publishes both: `mean` coherent at every
level, `median` per product-store series for absolute-error uses (the point a pick list or an
absolute-error target wants). Measured on the generated catalog (10,000 series, holdout fold):
relative MASE 0.52 for the median against 0.90 for the reconciled mean (and 0.58 for zero).

mlforecast builds the lag features and predicts recursively; LightGBM fits the model. The model
sees each series' lags at multiples of the season, its recent means, the calendar, and the
product, store and category as categorical features.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlops_assets.core.catalog import CatalogPlan, cutoffs
from mlops_assets.core.hierarchy import Hierarchy

TRAIN_PERIODS = 400  # the most recent periods each fit trains on: a year and a season or two
PARAMS = {
    "objective": "l1",
    "n_estimators": 300,
    "learning_rate": 0.05,
    "num_leaves": 63,
    "min_child_samples": 50,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "verbose": -1,
}


@dataclass
class MedianForecasts:
    """Per product-store series (the hierarchy's bottom rows, in order)."""

    selection: np.ndarray  # (bottom, horizon) fitted up to the last selection fold's origin
    holdout: np.ndarray  # (bottom, horizon) fitted up to the last fold's origin
    final: np.ndarray  # (bottom, horizon) fitted on every period
    seconds: float


def _frame(h: Hierarchy, upto: int) -> pd.DataFrame:
    """The bottom series' long frame up to period `upto` (inclusive), the last TRAIN_PERIODS of
    them, from each series' first sale; returns (net negative days) count as no sale."""
    bottom = np.arange(len(h.ids) - h.n_bottom, len(h.ids))
    start = max(0, upto + 1 - TRAIN_PERIODS)
    first = np.maximum(h.starts[bottom], start)
    keep = first <= upto
    rows, first = bottom[keep], first[keep]
    lengths = upto + 1 - first
    col = np.concatenate([np.arange(s, upto + 1) for s in first]) if len(rows) else np.array([], int)
    row = np.repeat(rows, lengths)
    ids = pd.Series(h.ids[rows])
    parts = ids.str.extract(r"^product=(?P<product>.*)/store=(?P<store>[^/]*)$")
    category = _category(h)[rows - bottom[0]]
    frame = pd.DataFrame(
        {
            "unique_id": h.ids[row],
            "ds": h.periods[col],
            "y": np.clip(np.nan_to_num(h.values[row, col]), 0, None),
            "product": np.repeat(parts["product"].to_numpy(), lengths),
            "store": np.repeat(parts["store"].to_numpy(), lengths),
            "category": np.repeat(category, lengths),
        }
    )
    for name in ("product", "store", "category"):
        frame[name] = frame[name].astype("category")
    return frame


def _category(h: Hierarchy) -> np.ndarray:
    """Each bottom series' category, read off the summing matrix (the category row it sums to)."""
    rows = h.rows("category")
    out = np.full(h.n_bottom, "", dtype=object)
    if len(rows):
        sub = h.S[rows].tocoo()
        out[sub.col] = np.char.replace(h.ids[rows][sub.row].astype(str), "category=", "")
    return out


def _model(season: int, freq: str, threads: int):
    import lightgbm as lgb
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMean, SeasonalRollingMean

    lags = [season * k for k in range(1, 5)] if season > 1 else [1, 2, 3, 4]
    dates = ["dayofweek", "month", "day"] if freq == "D" else ["month", "week"]
    return MLForecast(
        models={"median": lgb.LGBMRegressor(**PARAMS, n_jobs=threads)},
        freq=freq,
        lags=lags,
        lag_transforms={
            1: [RollingMean(season), RollingMean(4 * season), RollingMean(13 * season)],
            season: [SeasonalRollingMean(season, 4), SeasonalRollingMean(season, 12)],
        }
        if season > 1
        else {1: [RollingMean(4), RollingMean(13)]},
        date_features=dates,
    )


def fit_predict(
    h: Hierarchy, upto: int, horizon: int, season: int, freq: str = "D", threads: int = 1
) -> np.ndarray:
    """(bottom, horizon) medians for the periods after `upto`, from a model fitted on periods up
    to `upto`. A series with no sale yet by `upto` gets zeros."""
    frame = _frame(h, upto)
    out = np.zeros((h.n_bottom, horizon))
    if frame.empty:
        return out
    model = _model(season, freq, threads)
    with warnings.catch_warnings():  # mlforecast warns of each series shorter than its lags
        warnings.simplefilter("ignore", UserWarning)
        model.fit(frame, static_features=["product", "store", "category"], dropna=True)
        predicted = model.predict(horizon)
    wide = predicted.pivot(index="unique_id", columns="ds", values="median")
    bottom_ids = h.ids[len(h.ids) - h.n_bottom :]
    values = wide.reindex(bottom_ids).to_numpy()
    out[:, : values.shape[1]] = np.clip(np.nan_to_num(values), 0, None)
    return out


def median_forecasts(h: Hierarchy, plan: CatalogPlan, freq: str = "D") -> MedianForecasts:
    """Three fits: at the last selection fold's origin (where the catalog decides whether to
    publish the median as its point forecast), at the holdout's (the figure no decision saw),
    and on every period (the forecasts published)."""
    started = time.perf_counter()
    cut = cutoffs(h, plan)
    # one LightGBM thread: an OpenMP thread pool in the step's process would make a later fork
    # of that process (the top-level forecaster's process pool, in the same run) unsafe
    fits = [fit_predict(h, int(upto), plan.horizon, plan.season, freq, threads=1)
            for upto in (cut[-2], cut[-1], len(h.periods) - 1)]  # fmt: skip
    selection, holdout, final = fits
    return MedianForecasts(selection, holdout, final, time.perf_counter() - started)


def gmean(x: np.ndarray) -> float:
    x = x[np.isfinite(x) & (x > 0)]
    return float(np.exp(np.log(x).mean())) if len(x) else float("nan")


def prefer_median(
    kinds: np.ndarray, mean_err: np.ndarray, median_err: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """Per product-store series, whether its point forecast is the median: for each demand class,
    when the median's geometric-mean MAE relative to seasonal naive on the last selection fold
    (`*_err`: per series, NaN where seasonal naive is exact or undefined) is below the
    reconciled mean's. One decision per class, not per series: one fold of a mostly-zero series
    is too few days to choose on (per series: 0.55 on the generated catalog's holdout; per
    class: 0.51). Returns the flags and a sentence per class."""
    use = np.zeros(len(kinds), dtype=bool)
    notes = []
    for kind in sorted(set(kinds.tolist())):
        at = kinds == kind
        mean_fig, median_fig = gmean(mean_err[at]), gmean(median_err[at])
        better = bool(np.isfinite(median_fig) and np.isfinite(mean_fig) and median_fig < mean_fig)
        use[at] = better
        figures = (
            f"last selection fold, MAE relative to seasonal naive: median {median_fig:.3f}, "
            f"reconciled mean {mean_fig:.3f}"
            if np.isfinite(mean_fig) and np.isfinite(median_fig)
            else "no selection-fold figure: seasonal naive undefined or exact"
        )
        notes.append(
            f"{kind} product-store series ({int(at.sum())}): point forecast = "
            f"{'median' if better else 'mean'} ({figures})"
        )
    return use, notes
