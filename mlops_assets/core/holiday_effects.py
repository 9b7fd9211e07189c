"""Holiday effects learnt from the series' own past years, for models that know only a weekly
season.

A weekly model fitted through Black Friday carries the spike into every Friday it forecasts; one
fitted through a Christmas closure forecasts Christmas as an ordinary Wednesday. A retailer's
holidays move its sales by the same factor year after year, so the usual remedy (the holiday
adjustment of X-13's regARIMA and of Prophet's holiday regressors) applies: learn each holiday
day's factor, fit the model on the series with the factor taken out, and put it back on the
forecast.

Each day in a window around a public holiday (python-holidays' calendar of `country`; the
window is (days before, days after), so (-1, 4) holds Thanksgiving's eve, Black Friday and
Cyber Monday) is keyed (holiday, offset). Its ratio is the day's value over the median of the
same weekday one, two and three weeks either side outside any window (what the day would have
sold without the holiday); a key's factor is the geometric mean over its past occurrences, kept
only when it is beyond the noise of ordinary days' ratios. The model fits on the series with
each such day divided by its factor, and the forecast of a day whose key has occurred before
is multiplied by it, bands and scale too. A key the history has not seen yet (the first
Thanksgiving) stays unadjusted: nothing is known of it.

The season works the same way, a year at a time: where a series repeats last year's profile
(`yearly_helps`), the model fits on the ratio of each day to the same weekday's centred 7-day
mean a year earlier, and its forecast is multiplied back by that year-ago mean: December's
ramp, which a weekly model cannot know from the autumn, comes from last December.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlops_assets.core.forecast_models import Forecast, Model
from mlops_assets.core.series import holiday_window_days

YEAR = 364  # days: a year back on the same weekday
SMOOTH = 7  # days: the centred mean a year back that the ratio is taken to
MIN_RATIO_DAYS = 8 * 7  # days of year-on-year ratio the models need to fit on
NEIGHBOURS = (-21, -14, -7, 7, 14, 21)  # days: the same weekday around a holiday day
MAD_TO_SD = 1.4826  # a normal's standard deviation per median absolute deviation
MIN_FACTOR = 0.02  # a closure's factor is floored here (a zero day stays near zero, not at it)


@dataclass(frozen=True)
class HolidayWindow:
    country: str = "US"
    before: int = 1
    after: int = 4

    def days(self, start: pd.Timestamp, end: pd.Timestamp) -> dict[pd.Timestamp, str]:
        """Each day from start to end inside a window, keyed 'holiday+offset'; where windows
        overlap, the holiday nearer the day keeps it."""
        out: dict[pd.Timestamp, tuple[int, str]] = {}
        for d, key, offset in holiday_window_days(self.country, start, end, -self.before, self.after):
            if d not in out or abs(offset) < out[d][0]:
                out[d] = (abs(offset), key)
        return {d: key for d, (_, key) in out.items()}


def _references(y: pd.Series, ordinary: np.ndarray, days: pd.DatetimeIndex) -> np.ndarray:
    """Per day, the median of the ordinary days among the same weekday 1-3 weeks either side
    (NaN where none is positive)."""
    offsets = np.array(NEIGHBOURS, dtype="timedelta64[D]")
    grid = days.to_numpy(dtype="datetime64[ns]")[:, None] + offsets[None, :]
    pos = y.index.get_indexer(pd.DatetimeIndex(grid.ravel())).reshape(grid.shape)
    around = np.where(pos >= 0, ordinary[np.clip(pos, 0, None)], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a day with no ordinary neighbour
        ref = np.nanmedian(around, axis=1) if len(days) else np.empty(0)
    return np.where(ref > 0, ref, np.nan)


def factors(y: pd.Series, window: HolidayWindow) -> tuple[pd.Series, dict[str, float]]:
    """The series with its holiday days divided by their key's factor, and each key's factor
    (the geometric mean of value / reference over its occurrences with a positive reference).
    Only a factor beyond noise is kept: its mean log ratio more than three standard errors from
    zero, the noise measured on ordinary days against the same reference, so that a holiday the
    shop does not feel leaves its days as they were."""
    if y.empty:
        return y, {}
    values = y.astype(float)
    marked = window.days(y.index[0], y.index[-1])
    days = pd.DatetimeIndex([d for d in marked if d in values.index])
    if not len(days):
        return values, {}
    arr = values.to_numpy()
    ordinary = np.where(values.index.isin(days), np.nan, arr)
    at = values.index.get_indexer(days)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(np.maximum(arr[at] / _references(values, ordinary, days), MIN_FACTOR))
    ok = np.isfinite(ratio) & (arr[at] > 0)
    if not ok.any():
        return values, {}
    logs = pd.Series(ratio[ok]).groupby(np.array([marked[d] for d in days])[ok])
    plain = np.flatnonzero(np.isfinite(ordinary) & (ordinary > 0))
    sample = plain[:: max(1, len(plain) // 200)]  # ordinary days' own log ratios
    with np.errstate(divide="ignore", invalid="ignore"):
        noise = np.log(ordinary[sample] / _references(values, ordinary, values.index[sample]))
    noise = noise[np.isfinite(noise)]
    sd = MAD_TO_SD * float(np.median(np.abs(noise - np.median(noise)))) if len(noise) >= 20 else np.inf
    mean, count = logs.mean(), logs.count()
    kept = mean[np.abs(mean) > 3 * sd / np.sqrt(count)]
    effect = {str(k): float(np.exp(v)) for k, v in kept.items()}
    key_of = np.array([marked[d] for d in days], dtype=object)
    divide = np.array([effect.get(k, 1.0) for k in key_of])
    adjusted = arr.copy()
    adjusted[at] = arr[at] / divide
    return pd.Series(adjusted, index=values.index, name=y.name), effect


def restore(fc: Forecast, effect: dict[str, float], window: HolidayWindow) -> Forecast:
    """The forecast with each known holiday day's factor put back (bands and scale alike)."""
    marked = window.days(fc.index[0], fc.index[-1])
    mult = np.array([effect.get(marked.get(d, ""), 1.0) for d in fc.index])
    if np.all(mult == 1.0):
        return fc
    parts = {k: np.asarray(getattr(fc, k), dtype=float) * mult for k in Forecast.bands()}
    return Forecast(fc.index, **parts, scale=np.asarray(fc.scale, dtype=float) * mult)


def year_ago(adjusted: pd.Series, days: pd.DatetimeIndex) -> pd.Series:
    """For each of `days`, the centred 7-day mean of the holiday-adjusted series on the same
    weekday a year earlier (NaN where the series does not reach)."""
    week = adjusted.rolling(SMOOTH, center=True, min_periods=SMOOTH).mean()
    base = week.reindex(days - pd.Timedelta(days=YEAR))
    return pd.Series(base.where(base > 0).to_numpy(dtype=float), index=days)


def yearly_helps(y: pd.Series, end: int, window: HolidayWindow) -> bool:
    """Whether the series repeats last year's profile: dividing by the year-ago profile at
    least halves the variance of its log 4-week level (over the year before `end`, the
    holiday-adjusted series; at least 8 four-week periods). A retailer's December repeats last
    December and its ratio to a year ago is flat; a decaying cohort or a random walk does not
    repeat, and there the ratio is noise that only hurts the forecast (CDNOW's daily revenue,
    the M4 daily series: both fail this test)."""
    adjusted = factors(y.iloc[:end], window)[0]
    ratio = (adjusted / year_ago(adjusted, adjusted.index)).dropna()

    whole = len(ratio) // 28 * 28  # whole four-week periods, the last ending at `end`
    if whole < 8 * 28:
        return False
    ratio = ratio.iloc[-whole:]

    def spread(values: pd.Series) -> float:
        level = values.groupby(np.arange(len(values)) // 28).mean()
        return float(np.log(level[level > 0]).std())

    plain = spread(adjusted.reindex(ratio.index))
    return bool(plain > 0 and spread(ratio) ** 2 <= 0.5 * plain**2)


class HolidayAdjusted(Model):
    """Any daily candidate fitted on the holiday-adjusted series, its forecast re-adjusted;
    with `use_yearly` (decided per series by `yearly_helps` on the history before the holdout), fitted on
    the ratio to the year-ago profile and multiplied back by it."""

    use_yearly = False

    def __init__(self, inner: Model, window: HolidayWindow):
        self.inner, self.window = inner, window
        self.freq, self.country, self.m = inner.freq, inner.country, inner.m
        self.name = inner.name
        self.effect: dict[str, float] = {}

    def _adjust(self, y: pd.Series) -> pd.Series:
        adjusted, self.effect = factors(y, self.window)
        self.history, base = adjusted, year_ago(adjusted, adjusted.index)
        self.yearly = self.use_yearly and bool(base.notna().sum() >= MIN_RATIO_DAYS)
        return (adjusted / base).dropna() if self.yearly else adjusted

    def prepare(self, y: pd.Series) -> None:
        self.inner.prepare(self._adjust(y))

    def fit(self, y: pd.Series) -> HolidayAdjusted:
        self.inner = self.inner.fit(self._adjust(y))
        return self

    def predict(self, h: int) -> Forecast:
        fc = self.inner.predict(h)
        if not self.yearly:
            return restore(fc, self.effect, self.window)
        mult = year_ago(self.history, fc.index).to_numpy()
        if not np.isfinite(mult).all():
            raise ValueError("the year before the forecast is not in the history")
        parts = {k: np.asarray(getattr(fc, k), dtype=float) * mult for k in Forecast.bands()}
        fc = Forecast(fc.index, **parts, scale=np.asarray(fc.scale, dtype=float) * mult)
        return restore(fc, self.effect, self.window)

    def fresh(self) -> HolidayAdjusted:
        out = copy.copy(self)
        out.inner, out.effect = self.inner.fresh(), {}
        return out

    def describe(self) -> str:
        return f"{self.inner.describe()} with holiday effects"
