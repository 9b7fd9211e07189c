"""Rolling-origin backtests, forecast accuracy metrics, and the choice of model per series.

The folds split in two: the candidates are compared (and the ensemble formed) on every fold
but the last, the selection folds; the last fold is the holdout, which the choice never saw.
The chosen model's holdout accuracy, with intervals calibrated on the selection folds only, is
the out-of-sample figure that is reported and gated (a figure from the folds that made the
choice would flatter it: the best of several candidates on those folds is biased low)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlops_assets.core import conformal
from mlops_assets.core.forecast_models import BASELINE, CANDIDATES, ENSEMBLE, Forecast, Model
from mlops_assets.core.holiday_effects import HolidayAdjusted, HolidayWindow, yearly_helps

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


MIN_FOLD = 4  # periods: a shorter fold says too little to choose or calibrate by


def fold_length(n: int, h: int, folds: int) -> int:
    """The horizon, or for a history too short to hold `folds` folds of it after two folds of
    training, the longest fold length that fits (at least MIN_FOLD): a short real history is
    still backtested, on shorter folds, instead of shipping seasonal naive untested."""
    fits = n // (folds + 2)
    if fits < 5:  # training then needs its 10-period floor rather than two folds
        fits = (n - 10) // folds
    return max(min(h, fits), MIN_FOLD)


@dataclass
class Backtest:
    metrics: pd.DataFrame  # model, fold, origin, metrics...
    forecasts: dict[tuple[str, int], Forecast]
    failures: dict[str, str] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    ensemble_members: list[str] = field(default_factory=list)
    fold_length: int = 0  # periods per fold: the horizon, or less for a short history


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
    h = fold_length(len(y), h, folds)
    # a few horizons of history before the first fold; shorter than two seasons, the baseline
    # and the MASE scale fall back to the lag-1 naive forecast
    origins = fold_origins(len(y), h, folds, min_train=max(2 * h, 10))
    rows, forecasts, failures, descriptions = [], {}, {}, {}
    first_train = y.iloc[: origins[0]]
    adjusted = [t for t in models.values() if isinstance(t, HolidayAdjusted)]
    if adjusted:  # one decision per series, before the holdout, for every candidate
        yearly = yearly_helps(y, origins[-1], adjusted[0].window)
        for template in adjusted:
            template.use_yearly = yearly
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
    members = _best(selection(metrics), exclude={BASELINE})[:ensemble_size]
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
    return Backtest(metrics, forecasts, failures, descriptions, members, h)


def _best(metrics: pd.DataFrame, exclude: set[str] = frozenset()) -> list[str]:
    mean = metrics[~metrics["model"].isin(exclude)].groupby("model")["mase"].mean().dropna()
    return list(mean.sort_values(kind="stable").index)


def selection(metrics: pd.DataFrame) -> pd.DataFrame:
    """The rows of the selection folds: every fold but the last (the holdout)."""
    return metrics[metrics["fold"] < metrics["fold"].max()]


def choose(metrics: pd.DataFrame, rule: str = "best") -> tuple[str, str, float]:
    """rule "best": the candidate with the lowest mean MASE on the selection folds, seasonal
    naive unless one beats it there. rule "combination": the equal-weight combination of the
    candidates whenever one was formed (what the real-data benchmark found to hold out of
    sample; per-series choice on a few folds chases noise), else as "best". Returns (model,
    reason, selection-fold MASE relative to seasonal naive: an in-sample figure of the choice,
    shown beside the holdout one, never gated)."""
    picked = selection(metrics)
    mean = picked.groupby("model")["mase"].mean()
    base = float(mean.get(BASELINE, np.nan))
    if rule == "combination" and ENSEMBLE in mean.index and np.isfinite(base) and base > 0:
        return ENSEMBLE, "forecast combination (forecast.choice: combination)", float(mean[ENSEMBLE] / base)
    ranked = _best(picked)
    best = ranked[0] if ranked else BASELINE
    if best == BASELINE or not np.isfinite(base):
        return BASELINE, "no candidate beat seasonal naive on the selection folds' mean MASE", 1.0
    relative = float(mean[best] / base) if base > 0 else float("nan")
    return best, f"lowest selection-fold mean MASE {mean[best]:.3f} vs seasonal naive {base:.3f}", relative


def fold_windows(result: Backtest, name: str) -> list[int]:
    return sorted(k[1] for k in result.forecasts if k[0] == name)


def calibration_windows(result: Backtest, folds: list[int]) -> list[Forecast]:
    """Every candidate's forecasts of `folds`. The chosen model's own residuals on the folds
    that chose it are biased low (it won there partly by luck), which made its bands too
    narrow out of sample; each candidate's scores are normalised by its own scale, so all of
    them measure the same thing, and there are several times as many."""
    return [fc for (name, fold), fc in result.forecasts.items() if fold in folds and name != ENSEMBLE]


def holdout(y: pd.Series, result: Backtest, name: str, m: int) -> dict[str, float]:
    """The model's forecast of the last fold, its bands calibrated on the earlier folds only,
    scored against that fold; MASE relative to seasonal naive's on the same fold."""
    folds = fold_windows(result, name)
    q = conformal.calibrate(y, calibration_windows(result, folds[:-1]))
    fc = conformal.apply(result.forecasts[(name, folds[-1])], q).non_negative()
    train = y[y.index < fc.index[0]].to_numpy(dtype=float)
    out = scores(y.reindex(fc.index).to_numpy(dtype=float), fc, train, m)
    naive = scores(
        y.reindex(fc.index).to_numpy(dtype=float), result.forecasts[(BASELINE, folds[-1])], train, m
    )
    out["relative_mase"] = relative(out["mae"], naive["mae"])
    out["periods"] = float(len(fc.index))
    return out


def relative(mae: float, naive_mae: float) -> float:
    """MASE relative to seasonal naive on the same periods (the scale cancels: a MAE ratio)."""
    if naive_mae > 0:
        return mae / naive_mae
    return 1.0 if mae == 0 else float("inf")


def calibrated(y: pd.Series, result: Backtest, name: str, future: Forecast) -> Forecast:
    """The shipped forecast with bands calibrated on every backtest fold."""
    windows = calibration_windows(result, fold_windows(result, name))
    return conformal.apply(future, conformal.calibrate(y, windows)).non_negative()


OWN_HOLIDAYS = ("arima", "prophet")  # candidates with holiday terms of their own


def candidates(
    names: list[str], freq: str, country: str, holiday_window: tuple[int, int] | None = None
) -> dict[str, Model]:
    """The baseline always, then the configured candidates in order. With a holiday window, a
    daily candidate without holiday terms of its own learns the holidays' effects from past
    years (core/holiday_effects.py); the baseline stays plain seasonal naive, the yardstick."""
    ordered = [BASELINE, *[n for n in names if n != BASELINE]]
    out = {n: CANDIDATES[n](freq, country) for n in ordered}
    if holiday_window is None or freq != "D":
        return out
    window = HolidayWindow(country, -holiday_window[0], holiday_window[1])
    skip = {BASELINE, *OWN_HOLIDAYS}
    return {n: m if n in skip else HolidayAdjusted(m, window) for n, m in out.items()}
