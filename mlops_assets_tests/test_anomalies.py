"""Sales anomalies: injected spikes and drops in seasonal series are found; ordinary weekends
and holidays (Christmas closures, Black Friday) are not."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from mlops_assets.core.anomalies import AnomalySpec, design, detect, holiday_indicators, huber_fit
from mlops_assets.sample_data.calendar import demand_multiplier
from mlops_assets_tests.realdata import daily_revenue_series, inject_anomalies, injection_scores
from mlops_assets_tests.realdata import series_frame as real_frame

DAYS = pd.date_range("2023-01-01", "2024-12-31", freq="D")
SPIKES = ["2023-03-15", "2023-08-05", "2024-05-22"]  # a Wednesday, a Saturday, a Wednesday
DROPS = ["2023-06-13", "2024-02-25", "2024-09-26"]  # a Tuesday, a Sunday, a Thursday


def seasonal(base: float, seed: int, noise: float = 0.05) -> np.ndarray:
    """The sample generator's demand calendar (trend, busy weekends, summer and Christmas
    peaks, Christmas closure, Black Friday...) with multiplicative noise."""
    rng = np.random.default_rng(seed)
    return base * demand_multiplier(DAYS) * rng.lognormal(0, noise, len(DAYS))


def series_frame(values: dict[str, np.ndarray]) -> pd.DataFrame:
    parts = []
    for sid, y in values.items():
        level = "total" if sid == "total" else sid.split("=")[0]
        parts.append(pd.DataFrame({"series_id": sid, "level": level, "period": DAYS, "revenue": y}))
    return pd.concat(parts, ignore_index=True)


def injected(y: np.ndarray) -> np.ndarray:
    y = y.copy()
    y[DAYS.isin(pd.to_datetime(SPIKES))] *= 2.5
    y[DAYS.isin(pd.to_datetime(DROPS))] *= 0.3
    return y


def holiday_days() -> pd.DatetimeIndex:
    """Every day in a holiday's window (the holiday itself and the days around it)."""
    cols = holiday_indicators(DAYS, AnomalySpec())
    return DAYS[cols.to_numpy().any(axis=1)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_injected_spikes_and_drops_are_found_and_ordinary_days_are_not(seed):
    frame = series_frame(
        {
            "total": injected(seasonal(10_000, seed)),
            "store=S01": injected(seasonal(3_000, seed + 10, noise=0.08)),
            "store=S02": seasonal(2_000, seed + 20, noise=0.08),  # clean
        }
    )
    _, scored = detect(frame, AnomalySpec())
    flagged = scored[scored["is_anomaly"]]
    days = pd.to_datetime(SPIKES + DROPS)
    for sid in ("total", "store=S01"):
        mine = flagged[flagged["series_id"] == sid].set_index("period")
        assert days.isin(mine.index).all(), sid
        assert set(mine.loc[pd.to_datetime(SPIKES), "direction"]) == {"spike"}
        assert set(mine.loc[pd.to_datetime(DROPS), "direction"]) == {"drop"}
        rows = scored[scored["series_id"] == sid].set_index("period")
        assert rows.loc[days, "anomaly_score"].min() > rows.drop(days)["anomaly_score"].quantile(0.99)
    ordinary = flagged[~flagged["period"].isin(days) | (flagged["series_id"] == "store=S02")]
    # noise past 3.5 robust sd makes a stray day now and then (about 0.2%), never a holiday...
    assert len(ordinary) <= 0.003 * len(scored)
    assert not ordinary["period"].isin(holiday_days()).any()
    # ...and weekends, 40% busier than the weekly mean, are no likelier to be flagged than that
    weekends = scored["period"].dt.dayofweek >= 5
    assert (ordinary["period"].dt.dayofweek >= 5).sum() <= 0.005 * weekends.sum()


def test_holidays_and_weekends_are_explained_not_flagged():
    y = seasonal(10_000, 7)
    _, scored = detect(series_frame({"total": y}), AnomalySpec())
    total = scored.set_index("period")
    christmas, black_friday = pd.Timestamp("2023-12-25"), pd.Timestamp("2023-11-24")
    assert y[christmas == DAYS][0] < 0.2 * np.median(y)  # a real collapse in the data...
    assert y[black_friday == DAYS][0] > 2 * np.median(y)  # ...and a real surge
    assert abs(total.loc[christmas, "z"]) < 3 and abs(total.loc[black_friday, "z"]) < 3
    assert not total.loc[holiday_days(), "is_anomaly"].any()
    saturdays = total[total.index.dayofweek == 5]
    assert saturdays["revenue"].mean() > 1.3 * total["revenue"].mean()
    assert not saturdays["is_anomaly"].any()


def test_without_the_holiday_terms_christmas_would_be_an_anomaly():
    """The holiday indicators are what keep Christmas quiet: drop them and it is flagged."""
    y = seasonal(10_000, 7)
    _, scored = detect(series_frame({"total": y}), AnomalySpec(holiday_window=(0, -1)))  # empty window
    flagged = set(scored.loc[scored["is_anomaly"], "period"])
    assert pd.Timestamp("2023-12-25") in flagged or pd.Timestamp("2024-12-25") in flagged


def test_holiday_indicators_cover_the_window_around_each_holiday():
    cols = holiday_indicators(DAYS, AnomalySpec())
    assert cols.loc["2023-11-24", "Thanksgiving Day+1"] == 1  # Black Friday
    assert cols.loc["2024-11-29", "Thanksgiving Day+1"] == 1
    assert cols["Thanksgiving Day+1"].sum() == 2
    assert cols.loc["2023-12-24", "Christmas Day-1"] == 1


def test_weekly_series_have_no_day_of_week_terms():
    # periods on different weekdays (every 8 days), so day-of-week columns would not be empty:
    # a daily design carries six of them, a weekly one none
    periods = pd.date_range("2022-01-03", periods=150, freq="8D")
    weekdays = [np.asarray(periods.dayofweek == d, dtype=float) for d in range(1, 7)]

    def has_weekdays(x: np.ndarray) -> bool:
        return all(any(np.array_equal(x[:, j], w) for j in range(x.shape[1])) for w in weekdays)

    assert has_weekdays(design(periods, AnomalySpec(freq="D")))  # the check can see them
    assert not any(
        np.array_equal(col, w) for col in design(periods, AnomalySpec(freq="W")).T for w in weekdays
    )
    # and a spike in a weekly series is found alone
    weeks = pd.date_range("2022-01-03", periods=150, freq="W-MON")
    rng = np.random.default_rng(0)
    y = 1000 * (1 + 0.2 * np.sin(2 * np.pi * np.arange(150) / 52)) * rng.lognormal(0, 0.05, 150)
    y[100] *= 3
    frame = pd.DataFrame({"series_id": "total", "level": "total", "period": weeks, "revenue": y})
    _, scored = detect(frame, AnomalySpec(freq="W"))
    assert list(scored.loc[scored["is_anomaly"], "period"]) == [weeks[100]]


@pytest.mark.parametrize("source", ["seasonal", "real"])
def test_huber_fit_is_statsmodels_rlm(source):
    """The normal-equation IRLS gives statsmodels' RLM(HuberT) fit, on a calendar design with
    injected anomalies and on a real daily series (Washington bike rentals, with Sandy)."""
    if source == "seasonal":
        y, days = injected(seasonal(5000, seed=3)), DAYS
    else:
        series = next(s for s in daily_revenue_series() if s.name == "bike_rentals_daily").y
        y, days = series.to_numpy(dtype=float), pd.DatetimeIndex(series.index)
    x, logy = design(days, AnomalySpec()), np.log1p(np.clip(y, 0, None))
    expected = sm.RLM(logy, x, M=sm.robust.norms.HuberT()).fit().fittedvalues
    np.testing.assert_allclose(huber_fit(logy, x), expected, rtol=0, atol=1e-9)


def test_huber_fit_leaves_an_ill_conditioned_design_to_statsmodels():
    rng = np.random.default_rng(1)
    x = np.column_stack([np.ones(200), rng.normal(size=200)])
    x = np.column_stack([x, x[:, 1] + 1e-9 * rng.normal(size=200)])  # two columns nearly equal
    y = x[:, 1] + rng.standard_t(2, size=200)
    expected = sm.RLM(y, x, M=sm.robust.norms.HuberT()).fit().fittedvalues
    np.testing.assert_allclose(huber_fit(y, x), expected, atol=1e-9)


# --- real daily series --------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_daily():
    """Nine real daily series and the days the detector flags on them as they are."""
    series = {s.name: s.y for s in daily_revenue_series()}
    _, scored = detect(real_frame(series), AnomalySpec())
    flagged = {sid: set(g.loc[g["is_anomaly"], "period"]) for sid, g in scored.groupby("series_id")}
    return series, flagged


def test_real_events_are_found_on_the_clean_series(real_daily):
    _, flagged = real_daily
    # Hurricane Sandy shut Washington's bike share on 29-30 October 2012
    assert {pd.Timestamp("2012-10-29"), pd.Timestamp("2012-10-30")} <= flagged["bike_rentals_daily"]
    assert not flagged["m4_D10"]  # a smooth random walk: its daily moves are not anomalies


@pytest.mark.parametrize("share", [0.005, 0.03])
def test_recall_on_real_series_does_not_depend_on_how_many_anomalies_there_are(real_daily, share):
    """x3 spikes and x0.2 drops injected on ordinary days (no holiday window, not flagged as
    they are) of nine real daily series, as 0.5% or 3% of their days."""
    series, own = real_daily
    injected, truth = inject_anomalies(series, own, share)
    _, scored = detect(real_frame(injected), AnomalySpec())
    result = injection_scores(scored, truth, own)
    assert result["injected"] >= 20 and result["recall"] >= 0.8
    assert result["false_share"] <= 0.005
