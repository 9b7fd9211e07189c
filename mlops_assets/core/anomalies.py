"""Sales anomalies: an isolation forest over what is left of each sales series once its
weekly and yearly profile, trend and holidays are explained.

Per series, a robust (Huber) regression of log1p(revenue) on a linear trend, day of week,
yearly Fourier terms and one indicator per public holiday and day around it gives the
expected value; the residual, scaled by its median absolute deviation, is what a seasonal
weekend or a Christmas closure does not move. One isolation forest per level (total, store,
category: levels differ in how many series they hold, which would otherwise make the rarer
level easier to isolate) scores [residual z, day of week]; a day is an anomaly when the forest
isolates it and its |z| is at least `min_abs_z` (a forest always finds something to isolate,
even in clean data).
"""

from __future__ import annotations

from dataclasses import dataclass

import holidays
import numpy as np
import pandas as pd
import statsmodels.api as sm
from sklearn.ensemble import IsolationForest

from mlops_assets.core.series import fourier_terms

MAD_TO_SD = 1.4826  # a normal's standard deviation per median absolute deviation
YEAR = {"D": 365, "W": 52}  # periods per year


@dataclass(frozen=True)
class AnomalySpec:
    freq: str = "D"
    country: str = "US"
    holiday_window: tuple[int, int] = (-1, 4)  # days around each holiday with their own effect
    yearly_terms: int = 10  # Fourier pairs of the yearly profile (sharp Christmas ramps need ~10)
    n_estimators: int = 200
    contamination: float | str = 0.01  # share of periods per level the forest may isolate
    min_abs_z: float = 3.5
    seed: int = 0


def holiday_indicators(index: pd.DatetimeIndex, spec: AnomalySpec) -> pd.DataFrame:
    """One column per (holiday, offset) that occurs in the index, e.g. 'Thanksgiving Day+1'."""
    if spec.freq != "D":
        return pd.DataFrame(index=index)
    years = sorted({*index.year, *(index.year - 1), *(index.year + 1)})
    cal = holidays.country_holidays(spec.country, years=years)
    cols: dict[str, np.ndarray] = {}
    lo, hi = spec.holiday_window
    for day, name in cal.items():
        # "(observed)" days keep their own name: the shifted day off is not the usual date
        for offset in range(lo, hi + 1):
            when = pd.Timestamp(day) + pd.Timedelta(days=offset)
            hit = index == when
            if hit.any():
                key = f"{name}{offset:+d}"
                cols[key] = cols.get(key, np.zeros(len(index))) + hit
    return pd.DataFrame({k: np.minimum(v, 1.0) for k, v in cols.items()}, index=index)


def design(index: pd.DatetimeIndex, spec: AnomalySpec) -> np.ndarray:
    t = (index - index[0]).days.to_numpy(dtype=float) / 365.25
    blocks = [np.ones((len(index), 1)), t[:, None]]
    if spec.freq == "D":
        blocks.append(
            pd.get_dummies(index.dayofweek).reindex(columns=range(7), fill_value=0).to_numpy()[:, 1:]
        )
    if len(index) >= 2 * YEAR[spec.freq]:  # with one year, a yearly profile would absorb anomalies
        blocks.append(fourier_terms(index, 365.25, spec.yearly_terms, index[0]))
    blocks.append(holiday_indicators(index, spec).to_numpy())
    x = np.column_stack([b.astype(float) for b in blocks])
    return x[:, np.abs(x).sum(axis=0) > 0]


def residuals(y: pd.Series, spec: AnomalySpec) -> pd.DataFrame:
    """Expected revenue and the robust z of the log residual, per period."""
    logy = np.log1p(y.clip(lower=0).to_numpy(dtype=float))
    x = design(pd.DatetimeIndex(y.index), spec)
    fit = sm.RLM(logy, x, M=sm.robust.norms.HuberT()).fit()
    resid = logy - fit.fittedvalues
    scale = MAD_TO_SD * np.median(np.abs(resid - np.median(resid)))
    z = resid / scale if scale > 0 else np.zeros_like(resid)
    return pd.DataFrame(
        {
            "period": y.index,
            "revenue": y.to_numpy(),
            "expected": np.expm1(fit.fittedvalues),
            "residual": resid,
            "z": z,
        }
    )


@dataclass
class AnomalyDetector:
    """The fitted forests (one per level) and the settings that built their features."""

    spec: AnomalySpec
    forests: dict[str, IsolationForest]

    @staticmethod
    def features(frame: pd.DataFrame) -> np.ndarray:
        dow = pd.DatetimeIndex(frame["period"]).dayofweek.to_numpy()
        return np.column_stack([frame["z"].to_numpy(), dow])

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Adds anomaly_score (higher = more anomalous) and is_anomaly to residual rows."""
        out = frame.copy()
        out["anomaly_score"] = np.nan
        out["is_anomaly"] = False
        for level, rows in out.groupby("level"):
            forest = self.forests[level]
            x = self.features(rows)
            flagged = (forest.predict(x) == -1) & (np.abs(rows["z"].to_numpy()) >= self.spec.min_abs_z)
            out.loc[rows.index, "anomaly_score"] = -forest.score_samples(x)
            out.loc[rows.index, "is_anomaly"] = flagged
        return out


def residual_table(series: pd.DataFrame, spec: AnomalySpec) -> pd.DataFrame:
    """Residuals of every series of a sales_series frame (series_id, level, period, revenue)."""
    parts = []
    for (sid, level), rows in series.groupby(["series_id", "level"], sort=True):
        y = rows.set_index("period")["revenue"].sort_index()
        parts.append(residuals(y, spec).assign(series_id=sid, level=level))
    cols = ["series_id", "level", "period", "revenue", "expected", "residual", "z"]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def fit_detector(table: pd.DataFrame, spec: AnomalySpec) -> AnomalyDetector:
    forests = {
        level: IsolationForest(
            n_estimators=spec.n_estimators, contamination=spec.contamination, random_state=spec.seed
        ).fit(AnomalyDetector.features(rows))
        for level, rows in table.groupby("level")
    }
    return AnomalyDetector(spec, forests)


def detect(series: pd.DataFrame, spec: AnomalySpec) -> tuple[AnomalyDetector, pd.DataFrame]:
    """Fit on the history and score it: (detector, every period with its score and flag)."""
    table = residual_table(series, spec)
    if table.empty:
        return AnomalyDetector(spec, {}), table.assign(anomaly_score=[], is_anomaly=[])
    detector = fit_detector(table, spec)
    scored = detector.score(table)
    scored["direction"] = np.where(scored["z"] > 0, "spike", "drop")
    return detector, scored
