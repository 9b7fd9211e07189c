"""The catalog's forecasts made coherent: the reconciliation method chosen on the selection
folds among hierarchicalforecast's sparse reconcilers, scored on the holdout fold, and the final
forecasts with conformal 80% / 95% bands sized from the reconciled forecasts' own fold errors
(the base forecasts: core/catalog.py)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlops_assets.core.catalog import CatalogPlan, RowForecasts, cutoffs, scales
from mlops_assets.core.catalog_median import MedianForecasts, prefer_median
from mlops_assets.core.hierarchy import Hierarchy

# a tenth of the MASE scale added to each series' recent level, so that one without sales in
# its last horizon still gets a band (on the sample: 2.5% zero-width bands without it, 0.2% with)
FLOOR = 0.1


def _reconciler(name: str):
    from hierarchicalforecast.methods import BottomUpSparse, MinTraceSparse

    return {
        "bottom_up": BottomUpSparse(),
        "mint_wls_struct": MinTraceSparse(method="wls_struct"),
        "mint_ols": MinTraceSparse(method="ols"),
    }[name]


TREE = ("total", "store", "product_store")  # the strict tree inside the hierarchy


def tree(h: Hierarchy) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The rows of the strict hierarchy total > store > product-store, and hierarchicalforecast's
    tags for it (each level's positions among those rows)."""
    keep = np.flatnonzero(np.isin(h.levels, TREE))
    names = ["/".join(TREE[: i + 1]) for i in range(len(TREE))]
    return keep, {name: np.flatnonzero(h.levels[keep] == lv) for name, lv in zip(names, TREE, strict=True)}


def coherent(h: Hierarchy, forecasts: np.ndarray, method: str) -> np.ndarray:
    """Reconciled forecasts (series, horizon), negative product-store values set to zero and
    summed up again, so they stay coherent and never negative.

    `top_down`: hierarchicalforecast's top-down by forecast proportions on the strict tree total
    > store > product-store (the catalog's levels cross: a product-store sums both to its store
    and to its product, which top-down cannot take), so the total keeps its own forecast and
    each store and product-store its share; products and categories are then their sums. On
    real wholesale orders it was the method the selection folds chose, and it took the total
    from 1.72 (bottom-up) to 1.00 relative to seasonal naive."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "top_down":
            from hierarchicalforecast.methods import TopDownSparse

            keep, tags = tree(h)
            y_hat = np.maximum(forecasts[keep], 0.0)  # proportions of non-negative forecasts
            top_down = TopDownSparse(method="forecast_proportions")
            # NaN where a store's product-stores all forecast zero: they get zero
            mean = np.nan_to_num(top_down.fit_predict(S=h.S[keep], y_hat=y_hat, tags=tags)["mean"])
        else:
            mean = _reconciler(method).fit_predict(S=h.S, y_hat=forecasts)["mean"]
    bottom = np.maximum(mean[-h.n_bottom :], 0.0)
    return np.asarray(h.S @ bottom)


@dataclass
class CatalogForecast:
    method: str
    forecasts: pd.DataFrame  # series_id, level, period, step, model, mean, lower80 .. upper95, point
    choices: pd.DataFrame  # per series: level, kind, chosen model, selection / holdout MASE
    reconciliation: pd.DataFrame  # method x level: selection and holdout MASE (geometric means)
    holdout: pd.DataFrame  # series_id, level, period, mean, point, actual: the holdout fold
    metrics: dict[str, float]
    notes: list[str]


def _gmean(x: np.ndarray) -> float:
    x = x[np.isfinite(x) & (x > 0)]
    return float(np.exp(np.log(x).mean())) if len(x) else float("nan")


def reconcile(
    h: Hierarchy, base: RowForecasts, plan: CatalogPlan, median: MedianForecasts | None = None
) -> CatalogForecast:
    """The reconciliation chosen on the selection folds, its holdout figures, the bands, and the
    point forecast of each product-store series: the reconciled mean, or the global model's
    median (`median`) for the demand classes where it scored better on the last selection fold."""
    F, H = plan.folds, plan.horizon
    cut = cutoffs(h, plan)
    scale = scales(h, plan)
    actual = np.stack([np.nan_to_num(h.values[:, c + 1 : c + 1 + H]) for c in cut], axis=1)
    rows = []
    reconciled: dict[str, np.ndarray] = {}
    baseline_mae = np.abs(base.baseline - actual).mean(axis=2)  # (series, fold); NaN for short rows
    baseline_mae = np.where(baseline_mae > 0, baseline_mae, np.nan)
    for method in plan.reconcilers:
        r = np.stack([coherent(h, base.folds[:, k], method) for k in range(F)], axis=1)
        reconciled[method] = r
        mae = np.abs(r - actual).mean(axis=2)  # (series, fold)
        relative = mae / baseline_mae
        for level in dict.fromkeys(h.levels):
            at = h.levels == level
            rows.append(
                {
                    "method": method,
                    "level": level,
                    "series": int(at.sum()),
                    "selection_relative_mase": _gmean(np.exp(np.log(relative[at, :-1]).mean(axis=1))),
                    "holdout_relative_mase": _gmean(relative[at, -1]),
                    "selection_mase": _gmean((mae[at, :-1] / scale[at, None]).mean(axis=1)),
                    "holdout_mase": _gmean(mae[at, -1] / scale[at]),
                }
            )
    table = pd.DataFrame(rows)
    # the figure the gates and the report hold forecasts to (MASE relative to seasonal naive, a
    # geometric mean over series), each level counting once, on the selection folds only
    method = str(table.groupby("method")["selection_relative_mase"].mean().idxmin())
    folds = reconciled[method]
    recent = np.stack([recent_level(h, c, plan.horizon) for c in [*cut, len(h.periods) - 1]], axis=1)
    recent = recent + FLOOR * scale[:, None]  # a series without recent sales still gets a band
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.abs(folds - actual) / recent[:, :F, None]
    groups = pd.Series(h.levels.astype(str)) + "/" + pd.Series(base.kinds.astype(str))
    q_hold = {lvl: w * recent[:, F - 1] for lvl, w in _pooled(err[:, :-1], groups).items()}  # holdout widths
    q_final = {lvl: w * recent[:, F] for lvl, w in _pooled(err, groups).items()}
    final = coherent(h, base.final, method)
    hold = folds[:, -1]
    inside = {lvl: np.abs(actual[:, -1] - hold) <= q_hold[lvl][:, None] for lvl in (80, 95)}
    holdout_mase = np.abs(hold - actual[:, -1]).mean(axis=1) / scale
    relative = np.abs(hold - actual[:, -1]).mean(axis=1) / baseline_mae[:, -1]
    point_hold, point_final, source = hold.copy(), final.copy(), np.full(len(h.ids), "mean", dtype=object)
    notes = list(base.notes)
    if median is not None:
        b = np.arange(len(h.ids) - h.n_bottom, len(h.ids))

        def rel(forecast: np.ndarray, k: int) -> np.ndarray:
            return np.abs(forecast - actual[b, k]).mean(axis=1) / baseline_mae[b, k]

        use, why = prefer_median(base.kinds[b], rel(folds[b, -2], -2), rel(median.selection, -2))
        point_hold[b[use]], point_final[b[use]] = median.holdout[use], median.final[use]
        source[b[use]] = "median"
        notes += why
    relative_point = np.abs(point_hold - actual[:, -1]).mean(axis=1) / baseline_mae[:, -1]
    choices = pd.DataFrame(
        {
            "series_id": h.ids,
            "level": h.levels,
            "kind": base.kinds,
            "chosen_model": base.chosen,
            "selection_mase": base.selection_mase,
            "holdout_mase": holdout_mase,
            "holdout_relative_mase": relative,
            "point_source": source,
            "holdout_relative_mase_point": relative_point,
        }
    )
    metrics = {
        f"geomean_relative_mase_{level}": _gmean(relative[h.levels == level])
        for level in dict.fromkeys(h.levels)
    }
    metrics |= {f"coverage{lvl}": float(inside[lvl].mean()) for lvl in (80, 95)}
    # the same holdout by squared error (M5's RMSSE, relative to seasonal naive): the figure a
    # mean forecast is built for; absolute error favours a median, zero on a mostly-zero series
    with np.errstate(divide="ignore", invalid="ignore"):
        rmse = np.sqrt(((hold - actual[:, -1]) ** 2).mean(axis=1))
        naive_rmse = np.sqrt(((base.baseline[:, -1] - actual[:, -1]) ** 2).mean(axis=1))
        relative_rmse = rmse / np.where(naive_rmse > 0, naive_rmse, np.nan)
    metrics |= {
        f"geomean_relative_rmse_{level}": _gmean(relative_rmse[h.levels == level])
        for level in dict.fromkeys(h.levels)
    }
    bottom = h.levels == "product_store"
    # the point forecast judged by the loss it is chosen for: absolute error, at product-store
    metrics["geomean_relative_mase_point_product_store"] = _gmean(relative_point[bottom])
    metrics["point_median_share_product_store"] = float((source[bottom] == "median").mean())
    metrics |= {f"coverage{lvl}_product_store": float(inside[lvl][bottom].mean()) for lvl in (80, 95)}
    held = pd.DataFrame(
        {
            "series_id": np.repeat(h.ids, H),
            "level": np.repeat(h.levels, H),
            "period": np.tile(h.periods[cut[-1] + 1 : cut[-1] + 1 + H], len(h.ids)),
            "mean": hold.ravel(),
            "point": point_hold.ravel(),
            "actual": actual[:, -1].ravel(),
        }
    )
    return CatalogForecast(
        method, _frame(h, final, q_final, base.chosen, (point_final, source)), choices, table, held,
        metrics, notes,
    )  # fmt: skip


def recent_level(h: Hierarchy, upto: int, periods: int) -> np.ndarray:
    """Each series' mean absolute value over the `periods` periods up to `upto` (0 before its
    first; absolute: a product whose returns outweighed its sales has a negative net revenue)."""
    return np.nanmean(np.abs(np.nan_to_num(h.values[:, max(0, upto + 1 - periods) : upto + 1])), axis=1)


def _pooled(err: np.ndarray, groups: pd.Series) -> dict[int, np.ndarray]:
    """Split-conformal widths relative to each series' recent level: the 80% / 95% quantile of
    the fold errors divided by the level at their fold's origin, pooled over the series of one
    level and demand class (a series' own 84 errors give noisy quantiles, and a series selling
    more since its folds had its bands sized for less: 62% of the 80% bands held on a growing
    catalog; pooled and level-relative, 75%; on the sample 80%)."""
    out = {lvl: np.zeros(len(err)) for lvl in (80, 95)}
    for idx in groups.groupby(groups).indices.values():
        flat = err[idx].ravel()
        flat = flat[np.isfinite(flat)]
        for lvl in (80, 95):
            out[lvl][idx] = np.quantile(flat, min(lvl / 100 * (1 + 1 / len(flat)), 1.0)) if len(flat) else 0.0
    return out


def _frame(h, final, band, chosen, point: tuple[np.ndarray, np.ndarray]) -> pd.DataFrame:
    n, H = final.shape
    step = pd.tseries.frequencies.to_offset(pd.infer_freq(h.periods[:3]) or "D")
    periods = pd.date_range(h.periods[-1] + step, periods=H, freq=step)
    band = {lvl: band[lvl][:, None] for lvl in (80, 95)}
    return pd.DataFrame(
        {
            "series_id": np.repeat(h.ids, H),
            "level": np.repeat(h.levels, H),
            "period": np.tile(periods, n),
            "step": np.tile(np.arange(1, H + 1), n),
            "model": np.repeat(chosen, H),
            "mean": final.ravel(),
            "lower80": np.maximum(final - band[80], 0).ravel(),
            "upper80": (final + band[80]).ravel(),
            "lower95": np.maximum(final - band[95], 0).ravel(),
            "upper95": (final + band[95]).ravel(),
            "point": point[0].ravel(),
            "point_source": np.repeat(point[1], H),
        }
    )
