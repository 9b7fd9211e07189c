"""Champion / challenger decisions, on the same evaluation data for both.

Forecasters: both are forecasting procedures (a model choice per series, refitted at each
origin), so both are scored on the challenger's rolling-origin folds; the backtest already
forecast every candidate on those folds. Per series and period, the loss is the absolute error
scaled by the series' seasonal-naive MAE (so series of any size pool). Series are not
independent: stores and categories sum to the total, and one holiday or promotion moves them
all. The loss differences are therefore averaged over series within each period first, and a
one-sided Diebold-Mariano test (HAC variance over h - 1 lags, Harvey-Leybourne-Newbold
small-sample correction, Student t) runs on that one series of period means (the Driscoll-Kraay
idea: any dependence across series stays inside a period's mean, so n counts periods, not
series x periods). Effect size: the mean loss difference relative to the champion's mean loss,
with a 95% confidence interval.

Segmenters: the challenger may not be worse than the champion by more than a tolerance on
silhouette (both measured on the current customers) and bootstrap stability.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from mlops_assets.core.backtest import mase_scale
from mlops_assets.core.forecast_models import Forecast


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    stats: dict[str, float] = field(default_factory=dict)


def diebold_mariano(champion_loss: np.ndarray, challenger_loss: np.ndarray, h: int) -> dict[str, float]:
    """One-sided test that the challenger's expected loss is lower. d = champion - challenger;
    its mean's HAC (Newey-West, h - 1 lags) t statistic from statsmodels, HLN-corrected."""
    d = np.asarray(champion_loss, dtype=float) - np.asarray(challenger_loss, dtype=float)
    n = len(d)
    if n < 3 or np.allclose(d, d[0]):
        return {"n": n, "dm_statistic": np.nan, "p_value": np.nan, "mean_loss_difference": float(d.mean())}
    import statsmodels.api as sm  # imported when used: 2 s that a refresh run never needs

    fit = sm.OLS(d, np.ones(n)).fit(
        cov_type="HAC", cov_kwds={"maxlags": max(h - 1, 0), "use_correction": False}
    )
    dm = float(fit.tvalues[0])
    hln = np.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n) if n + 1 - 2 * h > 0 else 1.0
    statistic = dm * hln
    se = float(fit.bse[0])
    t95 = stats.t.ppf(0.975, n - 1)
    return {
        "n": n,
        "dm_statistic": statistic,
        "p_value": float(stats.t.sf(statistic, n - 1)),  # H1: the challenger's loss is lower
        "mean_loss_difference": float(d.mean()),
        "ci_low": float(d.mean() - t95 * se),
        "ci_high": float(d.mean() + t95 * se),
        "effect_size": float(d.mean() / np.mean(champion_loss)) if np.mean(champion_loss) > 0 else np.nan,
    }


def panel_diebold_mariano(champion: pd.Series, challenger: pd.Series, h: int) -> dict[str, float]:
    """Diebold-Mariano on the per-period means over series of two loss panels indexed by
    (series, period): a shock common to every series counts once, not once per series."""
    periods = [key[1] for key in champion.index]
    by_period = pd.DataFrame({"a": champion.to_numpy(), "b": challenger.to_numpy(), "p": periods})
    means = by_period.groupby("p", sort=True)[["a", "b"]].mean()
    return diebold_mariano(means["a"].to_numpy(), means["b"].to_numpy(), h)


def scaled_losses(
    series: dict[str, pd.Series],
    choice: dict[str, str],
    fold_forecasts: dict[str, dict[tuple[str, int], Forecast]],
    m: int,
) -> pd.Series:
    """Absolute errors of each series' chosen model over its folds, scaled by the series'
    seasonal-naive MAE before the first fold; indexed by (series, period). A series whose
    chosen model has no fold forecasts (too short, or the model failed this time) is absent."""
    parts = []
    for sid, name in choice.items():
        folds = sorted(k[1] for k in fold_forecasts.get(sid, {}) if k[0] == name)
        if not folds or sid not in series:
            continue
        y = series[sid]
        first = fold_forecasts[sid][(name, folds[0])].index[0]
        scale = mase_scale(y[y.index < first].to_numpy(dtype=float), m)
        for fold in folds:
            fc = fold_forecasts[sid][(name, fold)]
            err = np.abs(np.asarray(fc.mean) - y.reindex(fc.index).to_numpy(dtype=float))
            parts.append(pd.Series(err / (scale if scale > 0 else 1.0), index=[(sid, p) for p in fc.index]))
    return pd.concat(parts) if parts else pd.Series(dtype=float)


def compare_forecasters(
    champion: dict[str, str],
    challenger: dict[str, str],
    series: dict[str, pd.Series],
    fold_forecasts: dict[str, dict[tuple[str, int], Forecast]],
    h: int,
    m: int,
    alpha: float,
    newer: bool = False,
) -> Decision:
    """Promote when the challenger's choices are the champion's (the same procedure refitted
    on newer data) or when the Diebold-Mariano test finds its losses lower at level alpha.

    `newer`: the challenger was trained on data past the champion's. The folds refit both
    model choices, so they compare procedures; the champion as deployed was fitted on older
    data only. A newer challenger is then promoted as a refresh unless the test finds the
    champion's choices better at level alpha (non-inferiority), or a drifted market would keep
    a stale champion's forecasts forever."""
    if champion == challenger:
        return Decision(True, "same model per series as the champion, refitted on newer data", {})
    champ = scaled_losses(series, champion, fold_forecasts, m)
    chall = scaled_losses(series, challenger, fold_forecasts, m)
    common = champ.index.intersection(chall.index)
    if len(common) < 3:
        return Decision(False, "no common evaluation periods with the champion: kept the champion", {})
    result = panel_diebold_mariano(champ[common], chall[common], h)
    result |= {
        "champion_mean_scaled_loss": float(champ[common].mean()),
        "challenger_mean_scaled_loss": float(chall[common].mean()),
    }
    p, effect = result["p_value"], result.get("effect_size", np.nan)
    text = (
        f"Diebold-Mariano over {result['n']} periods (losses of {len(common)} series-periods averaged "
        f"per period): statistic {result['dm_statistic']:.2f}, "
        f"one-sided p {p:.3g}, loss {effect:+.1%} vs the champion "
        f"(95% CI of the mean scaled-loss difference {result.get('ci_low', np.nan):.3f} to "
        f"{result.get('ci_high', np.nan):.3f})"
    )
    if np.isnan(p):
        return Decision(False, "losses identical to the champion's: kept the champion", result)
    if p < alpha and result["mean_loss_difference"] > 0:
        return Decision(True, f"challenger better: {text}", result)
    if newer and 1 - p >= alpha:  # the champion's choices are not better either
        why = f"refresh: trained on newer data and not worse than the champion at level {alpha:g}"
        return Decision(True, f"{why}: {text}", result)
    if newer:
        return Decision(False, f"challenger worse at level {alpha:g} despite newer data: {text}", result)
    return Decision(False, f"challenger not better at level {alpha:g}: {text}", result)


def compare_segmenters(
    champion: dict[str, float], challenger: dict[str, float], tolerance: float
) -> Decision:
    """Silhouette and stability of the challenger not below the champion's by more than
    `tolerance` (absolute)."""
    rows = {}
    worse = []
    for metric in ("silhouette", "stability_ari"):
        a, b = float(champion[metric]), float(challenger[metric])
        rows[f"champion_{metric}"], rows[f"challenger_{metric}"] = a, b
        if b < a - tolerance:
            worse.append(f"{metric} {b:.3f} < champion {a:.3f} - {tolerance:g}")
    if worse:
        return Decision(False, "challenger worse: " + "; ".join(worse), rows)
    return Decision(
        True,
        f"silhouette {rows['challenger_silhouette']:.3f} (champion {rows['champion_silhouette']:.3f}) and "
        f"stability {rows['challenger_stability_ari']:.3f} (champion {rows['champion_stability_ari']:.3f}) "
        f"within {tolerance:g} of the champion or better",
        rows,
    )
