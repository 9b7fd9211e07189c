"""Holiday effects and the year-ago profile (core/holiday_effects.py): learnt from past years,
taken out before a weekly model fits, put back on its forecast."""

import numpy as np
import pandas as pd

from mlops_assets.core import backtest as bt
from mlops_assets.core.forecast_models import AutoEts
from mlops_assets.core.holiday_effects import HolidayAdjusted, HolidayWindow, factors, year_ago, yearly_helps

WEEK = np.array([0.85, 0.80, 0.85, 0.95, 1.15, 1.40, 1.00])


def retail_days(start="2022-01-01", end="2024-12-31", seed=0) -> pd.Series:
    """Weekly pattern, a December ramp each year, Black Friday x2.8, Cyber Monday x1.9, a
    Christmas closure x0.15 and 3% noise: the shape of a retailer's daily revenue."""
    idx = pd.date_range(start, end, freq="D")
    rng = np.random.default_rng(seed)
    doy = idx.dayofyear.to_numpy()
    y = 1000 * WEEK[idx.dayofweek] * (1 + 0.5 * np.exp(-0.5 * ((doy - 350) / 9) ** 2))
    effect = np.ones(len(idx))
    for year in sorted(set(idx.year)):
        thanksgiving = [d for d in pd.date_range(f"{year}-11-22", f"{year}-11-28") if d.dayofweek == 3][0]
        for offset, boost in ((0, 0.6), (1, 2.8), (2, 1.6), (4, 1.9)):
            effect[idx == thanksgiving + pd.Timedelta(days=offset)] = boost
        effect[idx == pd.Timestamp(f"{year}-12-25")] = 0.15
    return pd.Series(y * effect * rng.lognormal(0, 0.03, len(idx)), index=idx)


def test_factors_recover_each_holiday_days_effect_and_flatten_the_series():
    y = retail_days()
    adjusted, effect = factors(y, HolidayWindow("US", 1, 4))
    # within 15%: the weeks after Black Friday and Cyber Monday, half their reference, lie on
    # December's ramp and lift it
    assert abs(effect["Thanksgiving Day+1"] / 2.8 - 1) < 0.15  # Black Friday
    assert abs(effect["Thanksgiving Day+4"] / 1.9 - 1) < 0.15  # Cyber Monday
    assert abs(effect["Christmas Day+0"] - 0.15) < 0.03
    # a holiday this shop does not feel has no factor, and its days are left as they were
    assert "Labor Day+0" not in effect and "Independence Day+0" not in effect
    labor_day = pd.Timestamp("2024-09-02")
    assert adjusted[labor_day] == y[labor_day]
    black_friday = pd.Timestamp("2024-11-29")
    # the adjusted Black Friday is an ordinary Friday: within the range of the Fridays around it
    fridays = adjusted[[black_friday + pd.Timedelta(days=k) for k in (-21, -14, -7, 7, 14, 21)]]
    assert fridays.min() <= adjusted[black_friday] <= fridays.max()
    assert y[black_friday] > 1.5 * fridays.max()  # it was not before


def test_year_ago_is_the_smoothed_same_weekday_a_year_earlier_and_nan_beyond_the_history():
    y = retail_days("2023-01-01", "2024-06-30")
    days = pd.DatetimeIndex([pd.Timestamp("2024-03-06"), pd.Timestamp("2023-06-01")])
    base = year_ago(y, days)
    expected = y["2023-03-05":"2023-03-11"].mean()  # 364 days before, centred 7-day mean
    assert np.isclose(base.iloc[0], expected)
    assert np.isnan(base.iloc[1])  # a year before 2023-06-01 is not in the history


def december_forecast(model, y: pd.Series, origin: str, h: int = 28):
    train = y[y.index < origin]
    fc = model.fit(train).predict(h)
    actual = y.reindex(fc.index).to_numpy()
    return fc, actual


def test_a_weekly_model_with_holiday_effects_forecasts_december_better_than_without():
    y = retail_days()
    window = HolidayWindow("US", 1, 4)
    plain_fc, actual = december_forecast(AutoEts("D"), y, "2024-12-04")
    model = HolidayAdjusted(AutoEts("D"), window)
    model.use_yearly = yearly_helps(y, len(y[y.index < "2024-12-04"]), window)
    assert model.use_yearly  # December repeats: the year-ago profile is used
    adj_fc, _ = december_forecast(model, y, "2024-12-04")
    plain_mae, adj_mae = np.abs(plain_fc.mean - actual).mean(), np.abs(adj_fc.mean - actual).mean()
    assert adj_mae < 0.8 * plain_mae, (adj_mae, plain_mae)  # measured 0.69
    christmas = list(adj_fc.index).index(pd.Timestamp("2024-12-25"))
    assert adj_fc.mean[christmas] < 0.3 * adj_fc.mean[christmas - 7]  # the closure is forecast
    # the bands and the scale move with the day's factor
    width = adj_fc.upper80 - adj_fc.lower80
    assert width[christmas] < 0.3 * width[christmas - 7]


def test_a_random_walk_does_not_get_the_year_ago_profile():
    idx = pd.date_range("2022-01-01", "2024-12-31", freq="D")
    walk = pd.Series(np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.02, len(idx)))) * 100, index=idx)
    assert not yearly_helps(walk, len(walk) - 28, HolidayWindow())
    assert yearly_helps(retail_days(), len(idx) - 28, HolidayWindow())


def test_candidates_wrap_the_weekly_models_only_and_the_baseline_stays_plain():
    models = bt.candidates(["ets", "theta", "arima"], "D", "US", (-1, 4))
    assert type(models["seasonal_naive"]).__name__ == "SeasonalNaive"
    assert isinstance(models["ets"], HolidayAdjusted) and isinstance(models["theta"], HolidayAdjusted)
    assert not isinstance(models["arima"], HolidayAdjusted)  # it has holiday terms of its own
    assert not any(isinstance(m, HolidayAdjusted) for m in bt.candidates(["ets"], "D", "US").values())
    weekly = bt.candidates(["ets"], "W", "US", (-1, 4))
    assert not any(isinstance(m, HolidayAdjusted) for m in weekly.values())


def test_the_setting_names_a_window_around_the_holiday():
    import pytest
    from pydantic import ValidationError

    from mlops_assets.settings import ForecastSpec

    assert ForecastSpec().holiday_window == (-1, 4)
    assert ForecastSpec(holiday_window=None).holiday_window is None
    with pytest.raises(ValidationError, match="days before, days after"):
        ForecastSpec(holiday_window=(2, 4))


def test_a_holiday_days_reference_is_the_median_of_its_ordinary_same_weekday_neighbours():
    from mlops_assets.core.holiday_effects import _references

    y = retail_days()
    marked = HolidayWindow("US", 1, 4).days(y.index[0], y.index[-1])
    ordinary = np.where(y.index.isin(list(marked)), np.nan, y.to_numpy())

    def by_hand(day, offsets):
        around = [day + pd.Timedelta(days=k) for k in offsets]
        return np.median([y[d] for d in around if d not in marked])

    black_friday, last = pd.Timestamp("2024-11-29"), pd.Timestamp("2024-12-31")
    got = _references(y, ordinary, pd.DatetimeIndex([black_friday, last]))
    assert np.isclose(got[0], by_hand(black_friday, (-21, -14, -7, 7, 14, 21)))
    assert np.isclose(got[1], by_hand(last, (-21, -14, -7)))  # none after the end of the series
    assert pd.Timestamp("2024-12-24") in marked  # ...and Christmas Eve, a week before, left out
