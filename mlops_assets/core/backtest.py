"""Rolling-origin backtests, forecast accuracy metrics, and the choice of model per series."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlops_assets.core.forecast_models import BASELINE, CANDIDATES, ENSEMBLE, Forecast, Model

METRICS = ("mae", "rmse", "mape", "smape", "mase", "bias", "directional_accuracy", "coverage80", "coverage95")


def mase_scale(train: np.ndarray, m: int) -> float:
    """In-sample MAE of the seasonal naive forecast (lag-1 naive when shorter than 2 seasons)."""
    lag = m if len(train) > m else 1
    diffs = np.abs(train[lag:] - train[:-lag])
    return float(diffs.mean()) if len(diffs) else float("nan")


def scores(actual: np.ndarray, fc: Forecast, train: np.ndarray, m: int) -> dict[str, float]:
    actual, mean = np.asarray(actual, dtype=float), np.asarray(fc.mean, dtype=float)
    err = mean - actual
    nonzero = actual != 0
    denom = np.abs(actual) + np.abs(mean)
    scale = mase_scale(train, m)
    prev_a = np.r_[train[-1], actual[:-1]]
    prev_f = np.r_[train[-1], mean[:-1]]
    return {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        # percentage errors skip zero actuals (a closed day) instead of dividing by zero
        "mape": float(100 * np.mean(np.abs(err[nonzero] / actual[nonzero])))
        if nonzero.any()
        else float("nan"),
        "smape": float(
            100 * np.mean(np.where(denom > 0, 2 * np.abs(err) / np.where(denom > 0, denom, 1), 0))
        ),
        "mase": float(np.abs(err).mean() / scale) if scale > 0 else float("nan"),
        "bias": float(err.mean()),
        "directional_accuracy": float(np.mean(np.sign(actual - prev_a) == np.sign(mean - prev_f))),
        "coverage80": float(np.mean((fc.lower80 <= actual) & (actual <= fc.upper80))),
        "coverage95": float(np.mean((fc.lower95 <= actual) & (actual <= fc.upper95))),
    }


def fold_origins(n: int, h: int, folds: int, min_train: int) -> list[int]:
    """Training lengths of the folds: the last `folds` windows of h periods, oldest first."""
    origins = [n - h * k for k in range(folds, 0, -1)]
    if origins[0] < min_train:
        raise ValueError(
            f"{n} periods cannot hold {folds} folds of {h} after {min_train} periods of training"
        )
    return origins


@dataclass
class Backtest:
    metrics: pd.DataFrame  # model, fold, origin, metrics...
    forecasts: dict[tuple[str, int], Forecast]
    failures: dict[str, str] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    ensemble_members: list[str] = field(default_factory=list)


def backtest(
    y: pd.Series,
    models: dict[str, Model],
    h: int,
    folds: int,
    ensemble_size: int = 2,
) -> Backtest:
    """Every candidate fitted on each fold's past and scored on its next h periods. A model
    that fails on any fold is dropped with the reason; the baseline must not fail."""
    m = next(iter(models.values())).m
    # a few horizons of history before the first fold; shorter than two seasons, the baseline
    # and the MASE scale fall back to the lag-1 naive forecast
    origins = fold_origins(len(y), h, folds, min_train=max(2 * h, 10))
    rows, forecasts, failures, descriptions = [], {}, {}, {}
    first_train = y.iloc[: origins[0]]
    for name, template in models.items():
        try:
            template.prepare(first_train)
            model_rows, model_fc = [], {}
            for fold, origin in enumerate(origins):
                train, test = y.iloc[:origin], y.iloc[origin : origin + h]
                fitted = template.fresh().fit(train)
                fc = fitted.predict(h).non_negative()
                if not np.isfinite(fc.mean).all():
                    raise ValueError("non-finite forecast")
                model_rows.append({"model": name, "fold": fold, "origin": test.index[0], **scores(
                    test.to_numpy(), fc, train.to_numpy(), m)})  # fmt: skip
                model_fc[(name, fold)] = fc
            descriptions[name] = fitted.describe()
            rows += model_rows
            forecasts.update(model_fc)
        except Exception as exc:  # one bad candidate never fails the series
            if name == BASELINE:
                raise
            failures[name] = f"{type(exc).__name__}: {exc}"[:300]
    metrics = pd.DataFrame(rows)
    members = _best(metrics, exclude={BASELINE})[:ensemble_size]
    if len(members) >= 2:
        for fold, origin in enumerate(origins):
            train, test = y.iloc[:origin], y.iloc[origin : origin + h]
            fc = Forecast.average([forecasts[(mm, fold)] for mm in members])
            forecasts[(ENSEMBLE, fold)] = fc
            rows.append({"model": ENSEMBLE, "fold": fold, "origin": test.index[0], **scores(
                test.to_numpy(), fc, train.to_numpy(), m)})  # fmt: skip
        descriptions[ENSEMBLE] = "mean of " + " + ".join(members)
        metrics = pd.DataFrame(rows)
    else:
        members = []
    return Backtest(metrics, forecasts, failures, descriptions, members)


def _best(metrics: pd.DataFrame, exclude: set[str] = frozenset()) -> list[str]:
    mean = metrics[~metrics["model"].isin(exclude)].groupby("model")["mase"].mean().dropna()
    return list(mean.sort_values(kind="stable").index)


def choose(metrics: pd.DataFrame) -> tuple[str, str, float]:
    """The candidate with the lowest mean backtest MASE; seasonal naive unless one beats it.
    Returns (model, reason, MASE relative to seasonal naive)."""
    mean = metrics.groupby("model")["mase"].mean()
    base = float(mean.get(BASELINE, np.nan))
    ranked = _best(metrics)
    best = ranked[0] if ranked else BASELINE
    if best == BASELINE or not np.isfinite(base):
        return BASELINE, "no candidate beat seasonal naive on mean backtest MASE", 1.0
    relative = float(mean[best] / base) if base > 0 else float("nan")
    return best, f"lowest mean backtest MASE {mean[best]:.3f} vs seasonal naive {base:.3f}", relative


def candidates(names: list[str], freq: str, country: str) -> dict[str, Model]:
    """The baseline always, then the configured candidates in order."""
    ordered = [BASELINE, *[n for n in names if n != BASELINE]]
    return {n: CANDIDATES[n](freq, country) for n in ordered}
