"""Forecasting core: series building, metrics, candidates, backtests and the choice."""

import pickle

import numpy as np
import pandas as pd
import pytest

from mlops_assets.core import backtest as bt
from mlops_assets.core import forecasting, schemas
from mlops_assets.core.forecast_models import BASELINE, Forecast, Model, ProphetModel, SeasonalNaive
from mlops_assets.core.series import complete_periods, sales_series


def seasonal_series(days: int = 400, seed: int = 0, noise: float = 8.0) -> pd.Series:
    """Weekly pattern plus a trend plus noise: seasonal naive carries last week's noise into
    every forecast, so a model that learns the pattern beats it."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2023-01-02", periods=days, freq="D")
    week = np.array([80, 75, 85, 95, 120, 150, 110], dtype=float)
    y = week[idx.dayofweek] + 0.05 * np.arange(days) + rng.normal(0, noise, days)
    return pd.Series(y, index=idx)


# --- series ------------------------------------------------------------------------------


def test_sales_series_levels_zero_fill_and_skips():
    lines = pd.DataFrame(
        {
            "order_ts": pd.to_datetime(["2024-01-01 10:00", "2024-01-01 12:00", "2024-01-03 09:00"]),
            "product_id": ["P1", "P2", "P1"],
            "store_id": ["S1", "S2", "S1"],
            "quantity": [1.0, 2.0, -1.0],
            "amount": [10.0, 8.0, -10.0],
        }
    )
    catalog = pd.DataFrame({"product_id": ["P1", "P2"], "category": ["Toys", "Books"]})
    got = sales_series(lines, catalog, "D", ["total", "store", "category"], pd.Timestamp("2024-01-01"),
                       pd.Timestamp("2024-01-04"))  # fmt: skip
    assert got.ids() == ["total", "store=S1", "store=S2", "category=Books", "category=Toys"]
    assert got.values("total").tolist() == [18.0, 0.0, -10.0]  # Jan 2 zero-filled, a return on Jan 3
    assert got.values("store=S1", "units").tolist() == [1.0, 0.0, -1.0]
    assert got.frame.loc[got.frame["series_id"] == "total", "holidays"].tolist() == [1, 0, 0]  # New Year
    one_store = sales_series(lines.assign(store_id="ALL"), None, "D", ["total", "store", "category"],
                             pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-04"))  # fmt: skip
    assert one_store.ids() == ["total"]
    assert any("level 'store' skipped" in n for n in one_store.notes)
    assert any("level 'category' skipped" in n for n in one_store.notes)


def test_weekly_periods_are_complete_weeks_only():
    weeks = complete_periods(pd.Timestamp("2024-01-03"), pd.Timestamp("2024-02-01"), "W")
    # the week of Jan 1 started before the data; the week of Jan 29 is still running
    assert list(weeks) == list(pd.to_datetime(["2024-01-08", "2024-01-15", "2024-01-22"]))


# --- metrics -----------------------------------------------------------------------------


def test_scores_known_answers():
    train = np.array([10.0, 20.0, 12.0, 22.0])  # seasonal differences 2, 2: scale 2
    actual = np.array([0.0, 20.0, 30.0])
    idx = pd.date_range("2024-01-05", periods=3)
    fc = Forecast(idx, np.array([2.0, 18.0, 33.0]), np.array([0, 15, 29.0]), np.array([5, 25, 29.5]),
                  np.array([-1, 10, 20.0]), np.array([9, 30, 40.0]))  # fmt: skip
    s = bt.scores(actual, fc, train, m=2)
    assert s["mae"] == pytest.approx(7 / 3)
    assert s["rmse"] == pytest.approx(np.sqrt((4 + 4 + 9) / 3))
    assert s["mape"] == pytest.approx(100 * (2 / 20 + 3 / 30) / 2)  # the zero actual is skipped
    assert s["smape"] == pytest.approx(100 * (2 * 2 / 2 + 2 * 2 / 38 + 2 * 3 / 63) / 3)
    assert s["mase"] == pytest.approx((7 / 3) / 2)
    assert s["bias"] == pytest.approx((2 - 2 + 3) / 3)
    # directions from the last training value 22: down/up/up actual, down/up/up forecast
    assert s["directional_accuracy"] == 1.0
    assert s["coverage80"] == pytest.approx(2 / 3) and s["coverage95"] == 1.0


# --- candidates --------------------------------------------------------------------------


def test_seasonal_naive_repeats_the_last_season_with_widening_steps():
    y = seasonal_series(70, noise=0.0)
    fc = SeasonalNaive("D").fit(y).predict(10)
    assert np.allclose(fc.mean[:7], y.to_numpy()[-7:]) and np.allclose(fc.mean[7:], y.to_numpy()[-7:-4])
    width = fc.upper95 - fc.lower95
    assert np.allclose(width[:7], width[0]) and np.allclose(width[7:], width[0] * np.sqrt(2))
    assert fc.index[0] == y.index[-1] + pd.Timedelta(days=1)


@pytest.mark.parametrize("name", ["ets", "theta", "ces", "seasonal_ar", "mstl", "arima", "prophet"])
def test_each_candidate_beats_seasonal_naive_on_a_seasonal_series(name):
    y = seasonal_series(400)
    models = bt.candidates([name], "D", "US")
    result = bt.backtest(y, models, h=28, folds=3, ensemble_size=0)
    assert name not in result.failures, result.failures
    mase = result.metrics.groupby("model")["mase"].mean()
    assert mase[name] < mase[BASELINE]
    fc = result.forecasts[(name, 2)]
    assert (fc.lower95 <= fc.lower80).all() and (fc.upper80 <= fc.upper95).all()


def test_arima_order_is_searched_once_and_kept_per_fold():
    y = seasonal_series(300)
    model = bt.candidates(["arima"], "D", "US")["arima"]
    model.prepare(y.iloc[:200])
    assert model.order is not None and len(model.aic_table) >= 6
    assert model.aic_table[model.order] == min(model.aic_table.values())
    assert model.fresh().fit(y).order == model.order


# --- backtest and choice -----------------------------------------------------------------


class Broken(Model):
    name = "broken"

    def fit(self, y):
        raise np.linalg.LinAlgError("singular matrix")


class Worse(SeasonalNaive):
    name = "worse"

    def predict(self, h):
        fc = super().predict(h)
        return Forecast(fc.index, fc.mean * 1.5, fc.lower80, fc.upper80 * 1.5, fc.lower95, fc.upper95 * 1.5)


def test_backtest_has_folds_of_the_horizon_and_survives_a_broken_candidate():
    y = seasonal_series(200)
    models = {BASELINE: SeasonalNaive("D"), "broken": Broken("D")}
    result = bt.backtest(y, models, h=14, folds=3)
    assert sorted(result.metrics["fold"].unique()) == [0, 1, 2]
    origins = list(result.metrics["origin"])
    assert origins == [y.index[-42], y.index[-28], y.index[-14]]
    assert "singular matrix" in result.failures["broken"]


def test_nothing_better_than_naive_ships_naive():
    y = seasonal_series(200)
    result = bt.backtest(y, {BASELINE: SeasonalNaive("D"), "worse": Worse("D")}, h=14, folds=3)
    chosen, reason, relative = bt.choose(result.metrics)
    assert chosen == BASELINE and relative == 1.0 and "no candidate beat" in reason


def test_too_short_a_series_falls_back_to_naive_with_the_reason():
    y = seasonal_series(20)
    plan = forecasting.ForecastPlan(horizon=28, candidates=("seasonal_naive", "ets"))
    result = forecasting.forecast_series("short", y, plan)
    assert result.chosen == BASELINE and "cannot hold 4 folds" in result.reason
    assert len(result.future.mean) == 28 and (result.future.mean >= 0).all()


def test_a_short_history_is_backtested_on_shorter_folds():
    y = seasonal_series(60)
    plan = forecasting.ForecastPlan(horizon=28, candidates=("seasonal_naive", "ets"), choice="best")
    result = forecasting.forecast_series("short", y, plan)
    assert "folds of 10 periods" in result.reason and not result.metrics.empty
    assert result.metrics["fold"].nunique() == 4 and np.isfinite(result.relative_mase)
    assert len(result.future.mean) == 28


def test_forecast_all_in_two_processes_matches_one():
    series = {f"s{i}": seasonal_series(150, seed=i) for i in range(3)}
    plan = forecasting.ForecastPlan(horizon=14, candidates=("seasonal_naive", "ets"))
    one = forecasting.forecast_all(series, plan, workers=1)
    two = forecasting.forecast_all(series, plan, workers=2)
    assert [r.series_id for r in two] == list(series)
    for a, b in zip(one, two, strict=True):
        assert a.chosen == b.chosen
        assert np.allclose(a.future.mean, b.future.mean)
    report = forecasting.backtest_table(two)
    assert set(report["model"]) == {"seasonal_naive", "ets"} and report["chosen"].sum() == 3


def test_prophet_survives_pickling():
    y = seasonal_series(120)
    model = ProphetModel("D").fit(y)
    again = pickle.loads(pickle.dumps(model))
    assert np.allclose(again.predict(7).mean, model.predict(7).mean)


# --- the forecast gate ---------------------------------------------------------------------


def forecast_frame(**change) -> pd.DataFrame:
    steps = np.arange(1, 9)
    frame = pd.DataFrame(
        {
            "series_id": "total",
            "step": steps,
            "mean": 100.0,
            "lower80": 100 - 5.0 * steps,
            "upper80": 100 + 5.0 * steps,
            "lower95": 100 - 8.0 * steps,
            "upper95": 100 + 8.0 * steps,
        }
    )
    for col, (row, value) in change.items():
        frame.loc[row, col] = value
    return frame


@pytest.mark.parametrize(
    "change,rule",
    [
        ({"mean": (3, np.nan)}, "not_nullable"),
        ({"lower95": (7, -5.0)}, "greater_than_or_equal_to(0)"),
        ({"mean": (2, 150.0)}, "mean<=upper80"),
        ({"upper95": (0, 101.0)}, "upper80<=upper95"),
    ],
)
def test_forecast_gate_names_the_broken_rule(change, rule):
    with pytest.raises(Exception) as info:
        schemas.forecast_schema().validate(forecast_frame(**change), lazy=True)
    assert rule in str(info.value)
    schemas.forecast_schema().validate(forecast_frame(), lazy=True)


def test_forecast_gate_rejects_intervals_that_narrow_with_the_horizon():
    frame = forecast_frame()
    frame[["lower95", "upper95"]] = frame[["lower95", "upper95"]].iloc[::-1].to_numpy()
    frame["lower80"], frame["upper80"] = frame["lower95"] + 1, frame["upper95"] - 1
    with pytest.raises(Exception, match="intervals_widen_with_horizon"):
        schemas.forecast_schema().validate(frame, lazy=True)


def test_an_unexpected_error_in_one_series_ships_naive_for_it_alone(monkeypatch):
    def explode(series_id, y, spec):
        if series_id == "bad":
            raise RuntimeError("boom")
        return original(series_id, y, spec)

    original = forecasting.forecast_series
    monkeypatch.setattr(forecasting, "forecast_series", explode)
    plan = forecasting.ForecastPlan(horizon=14, candidates=("seasonal_naive", "ets"))
    results = forecasting.forecast_all({"good": seasonal_series(150), "bad": seasonal_series(150, 1)}, plan)
    by_id = {r.series_id: r for r in results}
    assert by_id["bad"].chosen == BASELINE and "RuntimeError: boom" in by_id["bad"].reason
    assert "fallback" not in by_id["good"].reason and not by_id["good"].metrics.empty


def test_ets_form_is_chosen_once_and_every_fit_estimates_it():
    from mlops_assets.core.forecast_models import AutoEts, ets_form

    assert ets_form("ETS(A,Ad,N)") == ("AAN", True) and ets_form("ETS(A,N,A)") == ("ANA", False)
    rng = np.random.default_rng(1)
    days = pd.date_range("2023-01-02", periods=364, freq="D")
    weekly = np.tile([1.0, 1.1, 1.2, 1.3, 1.5, 2.0, 0.6], 52) * 100
    y = pd.Series(weekly + rng.normal(0, 5, len(days)), index=days)
    model = AutoEts("D")
    model.prepare(y.iloc[:200])
    assert model.form is not None and model.form[0][2] == "A"  # a weekly season is found
    fitted = model.fresh().fit(y)
    assert fitted.describe().endswith(",A)")  # the chosen form, estimated on the whole history


def friday_stamped(series: pd.Series, store: str) -> pd.DataFrame:
    """A real chain's weekly totals as its feed sends them: one line per week, stamped on the
    week's last day (Walmart's store-department weeks end on Fridays)."""
    return pd.DataFrame(
        {
            "order_ts": series.index,
            "product_id": "P1",
            "store_id": store,
            "quantity": 1.0,
            "amount": series.to_numpy(),
        }
    )


def test_weekly_periods_follow_the_weekday_a_real_feed_stamps():
    from mlops_assets.core import series as series_core
    from mlops_assets_tests.realdata import FIXTURES, _panel

    panel = _panel(FIXTURES / "walmart_sales_weekly.csv", "W")
    (sid, y), (sid2, y2) = list(panel.items())[:2]
    assert set(y.index.dayofweek) == {4}  # stamped on Fridays
    lines = pd.concat([friday_stamped(y, "S1"), friday_stamped(y2, "S2")], ignore_index=True)
    week_ends, stamped, why = series_core.week_ends_of(lines, "W", None)
    assert (week_ends, stamped) == ("FRI", True) and "stamped" in why
    assert series_core.week_ends_of(lines, "W", "SUN")[:2] == ("SUN", False)  # forecast.week_ends wins
    # the window runs from the first stamp to the day after the last, as feature_as_of gives it
    start, end = y.index[0], y.index[-1] + pd.Timedelta(days=1)
    built = sales_series(
        lines, None, "W", ["total", "store"], start, end, week_ends=week_ends, stamped=stamped
    )
    total = built.all_values()["total"]
    # every stamped week is a complete period: the last one is trained on, none is lost
    assert len(total) == len(y) and total.iloc[-1] == pytest.approx(y.iloc[-1] + y2.iloc[-1])
    assert total.index[-1] == y.index[-1] - pd.Timedelta(days=6)  # labelled by its Saturday
    iso = sales_series(lines, None, "W", ["total"], start, end).all_values()["total"]
    assert len(iso) == len(y) - 2  # Monday..Sunday weeks: the last stamped week looked incomplete
    assert iso.index[-1] < y.index[-1] - pd.Timedelta(days=6)
    plan = forecasting.ForecastPlan(freq="W", horizon=8, folds=3, candidates=("ets",), ensemble_size=0)
    future = forecasting.forecast_series("total", total, plan).future
    assert future.index[0] == total.index[-1] + pd.Timedelta(weeks=1)  # the week after the last stamp
