"""The forecasting assets over the small sample (real series: test_forecast_realdata.py)."""

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from mlops_assets.definitions import registry_resource
from mlops_assets.settings import load_settings
from mlops_assets_tests.conftest import check_results, edit_sources, forecasting_keys, read_table, run_graph

START, END = "2023-01-01", "2023-03-31"


def test_forecasting_assets_backtest_choose_and_forecast(small_data_dir):
    # three months of days: a 7-day horizon leaves room for three folds
    edit_sources(
        small_data_dir, lambda s: s.update(forecast={"freq": "D", "horizon": 7, "levels": ["total", "store"]})
    )
    result = run_graph(small_data_dir, START, END, selection=forecasting_keys(small_data_dir))
    assert result.success
    checks = check_results(result)
    for name in ("beats_seasonal_naive", "forecasts_are_sane"):
        assert checks[name].passed, checks[name].description
    # 6 series x 7 holdout days: the coverage figure is coarse; no shortfall beyond chance, and
    # the warning check (wide bands, a shortfall within chance) is declared and evaluated
    assert checks["interval_coverage_within_tolerance"].passed, checks["interval_coverage_within_tolerance"]
    near = checks["interval_coverage_near_nominal"]
    assert near.passed or near.severity == dg.AssetCheckSeverity.WARN, near.description

    series = read_table(small_data_dir, "forecasting.sales_series")
    assert set(series["series_id"]) == {
        "total",
        "store=S01",
        "store=S02",
        "store=S03",
        "store=S04",
        "store=WEB",
    }
    assert series.groupby("series_id").size().eq(90).all()  # every day of the quarter, zero-filled
    choices = read_table(small_data_dir, "forecasting.forecast_choices").set_index("series_id")
    assert choices["relative_mase"].median() <= 1.0  # the gate's figure, on the holdout fold
    assert (choices["chosen_model"] == "ensemble").all()  # forecast.choice: combination
    report = read_table(small_data_dir, "forecasting.forecast_backtest_report")
    assert {"seasonal_naive", "ets", "theta", "ces", "seasonal_ar", "ensemble"} <= set(report["model"])
    assert report.groupby("series_id")["chosen"].sum().eq(1).all()
    chosen = report[report["chosen"]]
    assert chosen["holdout_relative_mase"].notna().all() and chosen["holdout_coverage80"].between(0, 1).all()
    forecasts = read_table(small_data_dir, "forecasting.sales_forecasts")
    assert forecasts.groupby("series_id")["step"].max().eq(7).all()
    assert forecasts["period"].min() == pd.Timestamp("2023-04-01")

    # the registered champion (the one copy of the model) reproduces the shipped forecast
    saved, _ = registry_resource(load_settings(small_data_dir)).load("sales_forecaster")
    assert saved.choices["total"] == choices.loc["total", "chosen_model"]
    point = np.mean([m.predict(7).non_negative().mean for m in saved.models["total"].values()], axis=0)
    total = forecasts[forecasts["series_id"] == "total"].sort_values("step")
    assert np.allclose(point, total["mean"], rtol=0.02)

    meta = {
        e.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert "data:image/png;base64," in meta["sales_forecaster"]["plot_total"].value
    assert 0 < meta["forecast_backtest_report"]["median_relative_mase"].value <= 1.0
    # the first forecaster whose gates pass is registered and becomes champion; the batch
    # forecasts come from that version
    assert (
        meta["sales_forecaster"]["model_version"].value == "1" and meta["sales_forecaster"]["promoted"].value
    )
    assert (forecasts["model_version"] == "1").all() and meta["sales_forecasts"]["model_version"].value == "1"


def test_a_strict_naive_gate_keeps_the_previous_forecasts(small_data_dir):
    edit_sources(small_data_dir, lambda s: s.update(forecast={"horizon": 7, "levels": ["total"]}))
    keys = forecasting_keys(small_data_dir)
    assert run_graph(small_data_dir, START, END, selection=keys).success
    before = read_table(small_data_dir, "forecasting.sales_forecasts")
    # nothing is 1000x better than seasonal naive: the gate must fail and block publishing
    edit_sources(small_data_dir, lambda s: s["forecast"].update(max_relative_mase=0.001))
    result = run_graph(small_data_dir, START, END, selection=keys)
    gate = check_results(result)["beats_seasonal_naive"]
    assert not gate.passed and "exceeds forecast.max_relative_mase 0.001" in gate.description
    mats = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "sales_forecasts" not in mats
    pd.testing.assert_frame_equal(read_table(small_data_dir, "forecasting.sales_forecasts"), before)


def test_models_fit_on_the_configured_recent_history():
    import pydantic

    from mlops_assets.assets.forecasting import recent
    from mlops_assets.settings import ForecastSpec

    days = pd.date_range("2015-01-01", "2024-12-31", freq="D")
    long = pd.Series(np.arange(len(days), dtype=float), index=days)
    kept = recent({"total": long, "empty": long.iloc[:0]}, 1096)
    assert kept["total"].index[0] == pd.Timestamp("2022-01-01") and len(kept["total"]) == 1096
    assert kept["total"].index[-1] == days[-1] and kept["empty"].empty
    assert recent({"total": long}, None)["total"] is long
    assert ForecastSpec().history_days == 1096 and ForecastSpec(history_days=None).history_days is None
    with pytest.raises(pydantic.ValidationError):
        ForecastSpec(history_days=30)  # less than a yearly cycle
