"""Conformal prediction intervals from rolling-origin residuals.

A model's own intervals assume its error model is right; on real revenue (spikes, closures,
decaying cohorts) they come out far too wide or too narrow. Split conformal prediction keeps the
model's shape of uncertainty over the horizon (its predictive scale per step) and sizes the band
from what the model actually missed by on earlier backtest windows: the nonconformity score of
a period is |actual - forecast| / scale, and the band at level a is forecast +- q_a * scale, with
q_a the ceil((n + 1) a)-th smallest of the n calibration scores (Angelopoulos & Bates 2021,
normalised scores as in Lei et al. 2018). Scores are pooled over the steps of the horizon, which
a few windows need to reach a usable n. Windows used to calibrate are never the ones scored.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops_assets.core.forecast_models import Forecast

LEVELS = (80, 95)


def usable_scale(fc: Forecast) -> np.ndarray:
    """The model's scale per step; a step whose scale is not positive takes the median positive
    scale of the window (1, so absolute scores, when there is none)."""
    scale = np.asarray(fc.scale, dtype=float)
    ok = np.isfinite(scale) & (scale > 0)
    return np.where(ok, scale, float(np.median(scale[ok])) if ok.any() else 1.0)


def scores(actual: np.ndarray, fc: Forecast) -> np.ndarray:
    """Normalised nonconformity scores |actual - forecast| / scale."""
    return np.abs(np.asarray(actual, dtype=float) - np.asarray(fc.mean, dtype=float)) / usable_scale(fc)


def quantiles(calibration: np.ndarray) -> dict[int, float]:
    """The conformal quantile per level; with too few scores for a level, the largest score
    (the band can then cover less than the level promises, and the coverage gate sees it)."""
    s = np.sort(np.asarray(calibration, dtype=float)[np.isfinite(calibration)])
    if not len(s):
        raise ValueError("no calibration scores")
    n = len(s)
    return {lvl: float(s[min(int(np.ceil((n + 1) * lvl / 100)), n) - 1]) for lvl in LEVELS}


def calibrate(y: pd.Series, windows: list[Forecast]) -> dict[int, float]:
    """Quantiles from the scores of `windows` (forecasts of earlier backtest folds) against y."""
    parts = [scores(y.reindex(fc.index).to_numpy(dtype=float), fc) for fc in windows]
    return quantiles(np.concatenate(parts))


def apply(fc: Forecast, q: dict[int, float]) -> Forecast:
    """The forecast with its bands resized by the conformal quantiles (unclipped: clip after).
    The scale is carried forward as its running maximum: what is known at the origin can only
    fade with the horizon (a multiplicative model's scale dips on quiet days; the band does not)."""
    scale, mean = np.maximum.accumulate(usable_scale(fc)), np.asarray(fc.mean, dtype=float)
    return Forecast(
        fc.index,
        mean,
        mean - q[80] * scale,
        mean + q[80] * scale,
        mean - q[95] * scale,
        mean + q[95] * scale,
        scale=fc.scale,
    )
