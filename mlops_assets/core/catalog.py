"""Catalog-scale forecasting: every series of the retail hierarchy (core/hierarchy.py) backtested
with statsforecast's compiled models in one vectorised pass per demand class, a model chosen per
series on the selection folds, the choices reconciled so that product-store forecasts sum to
every level above (the method chosen by backtest among hierarchicalforecast's sparse
reconcilers), and conformal bands sized from the reconciled forecasts' own fold errors.

The work splits in two (the second in core/reconciliation.py):
- `backtest_rows` (any subset of the series: the chunks Dagster steps spread over processes):
  per series its demand class, the candidates' fold forecasts, the choice, and the chosen
  model's fold and final forecasts;
- `reconcile` (all series at once): the reconciliation method chosen on the selection folds,
  scored on the holdout fold (the last, which no choice saw), and the final coherent forecasts
  with 80% / 95% bands.

Demand classes: `smooth` series (at most `intermittent_share` of their periods without sales)
get exponential smoothing and window averages; `intermittent` ones get Croston (SBA), ADIDA,
IMAPA and window averages; both get an equal-weight `combination` of their candidates, which
also wins ties (a series without sales in its selection folds). Seasonal naive is every
series' baseline but is never chosen for an intermittent one: a lagged copy of a mostly-zero
series wins a few folds by luck (on the generated catalog it was chosen for 3,882 of 10,000
product-store series; excluding it took their holdout MASE relative to it from 0.92 to 0.90).
Series too short to backtest (a product launched lately) get the `recent_mean` fallback: the
mean of their last season's periods, shaped by their category's (else the total's) profile
over the season.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlops_assets.core.hierarchy import Hierarchy

BASELINE = "seasonal_naive"
COMBINATION = "combination"
FALLBACK = "recent_mean"
RECONCILERS = ("bottom_up", "mint_wls_struct", "mint_ols", "top_down")


@dataclass(frozen=True)
class CatalogPlan:
    horizon: int = 28
    folds: int = 4  # rolling origins one horizon apart; the last is the holdout
    season: int = 7
    workers: int = 2
    intermittent_share: float = 0.3  # zero share above which a series is intermittent
    reconcilers: tuple[str, ...] = RECONCILERS

    @property
    def min_length(self) -> int:
        """Periods a series needs to be backtested: every fold, and four seasons to fit on."""
        return self.folds * self.horizon + 4 * self.season


def _models(kind: str, season: int):
    from statsforecast.models import (
        ADIDA,
        IMAPA,
        CrostonSBA,
        SeasonalExponentialSmoothingOptimized,
        SeasonalNaive,
        SeasonalWindowAverage,
        SimpleExponentialSmoothingOptimized,
        WindowAverage,
    )

    common = [
        SeasonalNaive(season, alias=BASELINE),
        WindowAverage(4 * season, alias="window_average"),
        SeasonalWindowAverage(season, 4, alias="seasonal_window_average"),
    ]
    if kind == "smooth":
        return common + [
            SimpleExponentialSmoothingOptimized(alias="ses"),
            SeasonalExponentialSmoothingOptimized(season, alias="seasonal_es"),
        ]
    return common + [CrostonSBA(alias="croston_sba"), ADIDA(alias="adida"), IMAPA(alias="imapa")]


@dataclass
class RowForecasts:
    """What `backtest_rows` returns for its rows (indices into the hierarchy)."""

    rows: np.ndarray
    kinds: np.ndarray  # smooth, intermittent, short
    chosen: np.ndarray  # model name per row
    folds: np.ndarray  # (rows, folds, horizon) the chosen model's fold forecasts
    baseline: np.ndarray  # (rows, folds, horizon) seasonal naive's (NaN for short rows)
    final: np.ndarray  # (rows, horizon) the chosen model refitted on all periods
    selection_mase: np.ndarray  # chosen model's mean MASE over the selection folds
    notes: list[str] = field(default_factory=list)


def cutoffs(h: Hierarchy, plan: CatalogPlan) -> np.ndarray:
    """Index of the last period each fold's models see."""
    t = len(h.periods)
    return np.array([t - 1 - (plan.folds - k) * plan.horizon for k in range(plan.folds)])


def scales(h: Hierarchy, plan: CatalogPlan) -> np.ndarray:
    """Per series the in-sample seasonal naive MAE before the first fold's forecasts (the MASE
    denominator); the whole history's where that is zero; 1 where the series never varies."""
    first = cutoffs(h, plan)[0] + 1
    diff = np.abs(h.values[:, plan.season :] - h.values[:, : -plan.season])
    before = diff[:, : max(first - plan.season, 0)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        scale = np.nanmean(before, axis=1) if before.shape[1] else np.full(len(h.ids), np.nan)
        whole = np.nanmean(diff, axis=1)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, whole)
    return np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)


def profile(h: Hierarchy, row: int, upto: int, season: int) -> np.ndarray:
    """A series' mean shape over the season (mean 1) from its periods up to `upto`."""
    y = h.values[row, : upto + 1]
    y = y[-(len(y) // season) * season :] if len(y) >= season else y[:0]
    y = y[np.isfinite(y)]
    if len(y) < 4 * season or y.sum() <= 0:
        return np.ones(season)
    phase = (np.arange(upto + 1 - len(y), upto + 1)) % season
    counts = np.maximum(np.bincount(phase, minlength=season), 1)
    means = np.bincount(phase, weights=y, minlength=season) / counts
    return means / means.mean() if means.mean() > 0 else np.ones(season)


def fallback(
    h: Hierarchy, rows: np.ndarray, upto: int, plan: CatalogPlan, parent: dict[int, int]
) -> np.ndarray:
    """recent_mean: the mean of each row's last season (0 before its first sale), shaped by its
    category's seasonal profile (the total's for rows above the categories; `parent`: parents())."""
    out = np.zeros((len(rows), plan.horizon))
    steps = np.arange(upto + 1, upto + 1 + plan.horizon) % plan.season
    shapes: dict[int, np.ndarray] = {}
    for i, r in enumerate(rows):
        recent = h.values[r, max(0, upto + 1 - plan.season) : upto + 1]
        recent = recent[np.isfinite(recent)]
        if not len(recent):
            continue
        p = parent.get(int(r), 0)
        if p not in shapes:
            shapes[p] = profile(h, p, upto, plan.season)
        out[i] = recent.mean() * shapes[p][steps]
    return out


def parents(h: Hierarchy) -> dict[int, int]:
    """Row of the category each product and product-store row belongs to."""
    member = np.full(h.n_bottom, -1)
    for r in h.rows("category"):
        member[h.S.indices[h.S.indptr[r] : h.S.indptr[r + 1]]] = r
    out: dict[int, int] = {}
    for level in ("product", "product_store"):
        for r in h.rows(level):
            bottoms = h.S.indices[h.S.indptr[r] : h.S.indptr[r + 1]]
            if len(bottoms) and member[bottoms[0]] >= 0:
                out[int(r)] = int(member[bottoms[0]])
    return out


def classify(h: Hierarchy, rows: np.ndarray, plan: CatalogPlan) -> np.ndarray:
    t = len(h.periods)
    length = t - h.starts[rows]
    zero = np.nanmean(h.values[rows] == 0, axis=1, where=np.isfinite(h.values[rows]))
    kind = np.where(zero > plan.intermittent_share, "intermittent", "smooth").astype(object)
    kind[length < plan.min_length] = "short"
    return kind


def _statsforecast(frame: pd.DataFrame, kind: str, plan: CatalogPlan, freq: str):
    from statsforecast import StatsForecast

    sf = StatsForecast(models=_models(kind, plan.season), freq=freq, n_jobs=plan.workers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cv = sf.cross_validation(df=frame, h=plan.horizon, n_windows=plan.folds, step_size=plan.horizon)
        final = sf.forecast(df=frame, h=plan.horizon)
    return cv, final


def _cube(frame: pd.DataFrame, ids: np.ndarray, columns: list[str], n_folds: int, h: int) -> np.ndarray:
    """(series, model, fold, step) from statsforecast's long cross-validation frame."""
    frame = frame.sort_values(["unique_id", "cutoff", "ds"])
    order = pd.Index(ids).get_indexer(frame["unique_id"].drop_duplicates())
    values = frame[columns].to_numpy(dtype=float).reshape(len(order), n_folds, h, len(columns))
    out = np.empty((len(ids), len(columns), n_folds, h))
    out[order] = values.transpose(0, 3, 1, 2)
    return out


def backtest_rows(h: Hierarchy, rows: np.ndarray, plan: CatalogPlan, freq: str = "D") -> RowForecasts:
    rows = np.asarray(rows)
    kinds = classify(h, rows, plan)
    n, F, H = len(rows), plan.folds, plan.horizon
    out = RowForecasts(
        rows, kinds, np.full(n, FALLBACK, dtype=object), np.zeros((n, F, H)), np.full((n, F, H), np.nan),
        np.zeros((n, H)), np.full(n, np.nan),
    )  # fmt: skip
    cut = cutoffs(h, plan)
    scale = scales(h, plan)[rows]
    actual = np.stack([np.nan_to_num(h.values[rows, c + 1 : c + 1 + H]) for c in cut], axis=1)
    for kind in ("smooth", "intermittent"):
        mine = np.flatnonzero(kinds == kind)
        if not len(mine):
            continue
        cv, final = _statsforecast(h.long(rows[mine]), kind, plan, freq)
        names = [c for c in cv.columns if c not in ("unique_id", "ds", "cutoff", "y")]
        ids = h.ids[rows[mine]]
        cube = _cube(cv, ids, names, F, H)  # (series, model, fold, step)
        candidates = [i for i, m in enumerate(names) if m != BASELINE]
        combo = cube[:, candidates].mean(axis=1, keepdims=True)
        cube = np.concatenate([combo, cube], axis=1)  # the combination first: it wins ties
        models = [COMBINATION, *names]
        mae = np.abs(np.nan_to_num(cube) - actual[mine][:, None]).mean(axis=3)  # (series, model, fold)
        mase = mae / scale[mine][:, None, None]
        selection = mase[:, :, :-1].mean(axis=2)
        eligible = selection.copy()
        if kind == "intermittent":  # a lagged copy of a mostly-zero series wins folds by luck
            eligible[:, models.index(BASELINE)] = np.inf
        pick = np.argmin(eligible, axis=1)
        at = np.arange(len(mine))
        out.chosen[mine] = np.array(models, dtype=object)[pick]
        out.folds[mine] = np.nan_to_num(cube[at, pick])
        out.baseline[mine] = cube[:, models.index(BASELINE)]
        out.selection_mase[mine] = selection[at, pick]
        fin = final.set_index("unique_id").loc[ids]
        fin_cube = fin[names].to_numpy(dtype=float).reshape(len(mine), H, len(names)).transpose(0, 2, 1)
        fin_cube = np.concatenate([fin_cube[:, candidates].mean(axis=1, keepdims=True), fin_cube], axis=1)
        out.final[mine] = np.nan_to_num(fin_cube[at, pick])
    short = np.flatnonzero(kinds == "short")
    if len(short):
        parent = parents(h)
        for k, c in enumerate(cut):
            out.folds[short, k] = fallback(h, rows[short], c, plan, parent)
        out.final[short] = fallback(h, rows[short], len(h.periods) - 1, plan, parent)
        out.notes.append(
            f"{len(short)} series with fewer than {plan.min_length} periods: {FALLBACK} "
            "(their last season's mean, shaped by their category's profile)"
        )
    return out


def join(parts: list[RowForecasts], n: int) -> RowForecasts:
    """The chunks' results as one, in hierarchy row order (every row exactly once)."""
    rows = np.concatenate([p.rows for p in parts])
    if len(rows) != n or len(np.unique(rows)) != n:
        raise ValueError(f"the chunks cover {len(np.unique(rows))} of {n} series ({len(rows)} rows)")
    order = np.argsort(rows)

    def cat(name):
        return np.concatenate([getattr(p, name) for p in parts])[order]

    return RowForecasts(
        rows[order], cat("kinds"), cat("chosen"), cat("folds"), cat("baseline"), cat("final"),
        cat("selection_mase"), [note for p in parts for note in p.notes],
    )  # fmt: skip


def chunks(n: int, size: int, minimum: int = 1) -> list[np.ndarray]:
    """Row indices split into consecutive chunks of at most about `size` rows, and at least
    `minimum` chunks (one per worker) when there are that many rows."""
    k = min(max(minimum, int(np.ceil(n / max(size, 1)))), max(n, 1))
    return [part for part in np.array_split(np.arange(n), k) if len(part)]
