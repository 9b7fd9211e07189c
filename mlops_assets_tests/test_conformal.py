"""Conformal bands and the holdout fold: calibrated on earlier windows, scored on one the
calibration and the choice never saw; the accuracy gate can fail."""

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from mlops_assets.assets.forecasting import GATES, beats_naive_result, coverage_result
from mlops_assets.core import conformal, forecasting
from mlops_assets.core.forecast_models import Forecast


def gaussian_forecast(index, mean, sd) -> Forecast:
    return Forecast(index, mean, mean - 1.2816 * sd, mean + 1.2816 * sd, mean - 1.96 * sd, mean + 1.96 * sd)


def test_conformal_quantile_is_the_finite_sample_order_statistic():
    s = np.arange(1.0, 20.0)  # n = 19: the 80% quantile is the ceil(20 * 0.8) = 16th smallest
    q = conformal.quantiles(s)
    assert q[80] == 16.0 and q[95] == 19.0
    assert conformal.quantiles(np.arange(1.0, 5.0))[95] == 4.0  # too few scores: the largest


def test_calibrated_bands_cover_nominally_where_the_model_bands_are_five_times_too_wide():
    index = pd.date_range("2024-01-01", periods=40, freq="D")
    truth_sd = 2.0

    def window(seed):
        actual = pd.Series(100 + np.random.default_rng(seed).normal(0, truth_sd, 40), index=index)
        return actual, gaussian_forecast(index, np.full(40, 100.0), np.full(40, 5 * truth_sd))

    calibration = [window(s) for s in range(10)]
    q = conformal.quantiles(np.concatenate([conformal.scores(a.to_numpy(), fc) for a, fc in calibration]))
    actual, raw = window(99)
    fc = conformal.apply(raw, q)
    raw80 = np.mean((raw.lower80 <= actual) & (actual <= raw.upper80))
    cal80 = np.mean((fc.lower80 <= actual) & (actual <= fc.upper80))
    cal95 = np.mean((fc.lower95 <= actual) & (actual <= fc.upper95))
    assert raw80 == 1.0  # the model's own band is far too wide
    assert abs(cal80 - 0.80) <= 0.15 and abs(cal95 - 0.95) <= 0.1
    assert q[80] < 1.2816 / 3  # the band shrank to about a fifth


def overfit_series() -> pd.Series:
    """A noisy weekly pattern, then a final 4 weeks that repeat the last week exactly: the
    smoothing model that wins on the noisy folds loses to seasonal naive on the holdout."""
    rng = np.random.default_rng(0)
    idx = pd.date_range("2023-01-02", periods=200, freq="D")
    week = np.array([80, 75, 85, 95, 120, 150, 110], dtype=float)
    y = week[idx.dayofweek] + rng.normal(0, 12, 200)
    y[-35:] = np.tile(y[-35:-28], 5)
    return pd.Series(y, index=idx)


def clean_seasonal_series() -> pd.Series:
    rng = np.random.default_rng(1)
    idx = pd.date_range("2023-01-02", periods=200, freq="D")
    week = np.array([80, 75, 85, 95, 120, 150, 110], dtype=float)
    return pd.Series(week[idx.dayofweek] + 0.2 * np.arange(200) + rng.normal(0, 10, 200), index=idx)


def test_accuracy_gate_fails_where_selection_overfits_and_passes_where_a_model_beats_naive():
    plan = forecasting.ForecastPlan(horizon=28, candidates=("seasonal_naive", "ets"), choice="best")
    for name, y, passes in (
        ("overfit", overfit_series(), False),
        ("seasonal", clean_seasonal_series(), True),
    ):
        result = forecasting.forecast_series(name, y, plan)
        assert result.chosen == "ets"  # both times the selection folds preferred the model
        choices = forecasting.choice_table([result])
        gate = beats_naive_result(choices, 1.0)
        assert gate.passed is passes, (name, result.relative_mase, result.selection_relative_mase)
        if not passes:  # the in-sample figure claimed a win that the holdout does not show
            assert result.selection_relative_mase < 1.0 < result.relative_mase


def report(c80: float, c95: float, periods: int = 28) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "chosen": [True],
            "holdout_coverage80": [c80],
            "holdout_coverage95": [c95],
            "holdout_periods": [periods],
        }
    )


def test_coverage_gate_blocks_narrow_bands_and_only_warns_on_wide_ones():
    narrow, narrow_warn = coverage_result(report(0.50, 0.80), 0.10)
    assert not narrow.passed and narrow.severity == dg.AssetCheckSeverity.ERROR
    assert "too narrow" in narrow.description and narrow.metadata["coverage80_p_value"].value < 0.05
    assert not narrow_warn.passed and narrow_warn.severity == dg.AssetCheckSeverity.WARN
    block, wide = coverage_result(report(0.99, 1.0), 0.10)
    assert block.passed  # wide bands are wasteful, not unsafe: the blocking gate holds
    assert not wide.passed and wide.severity == dg.AssetCheckSeverity.WARN and "too wide" in wide.description
    assert all(r.passed for r in coverage_result(report(0.78, 0.93), 0.10))
    # the same kind of shortfall over a 10-day holdout is within chance: a warning, not a block
    block, short = coverage_result(report(0.60, 0.90, periods=10), 0.10)
    assert block.passed and not short.passed and short.severity == dg.AssetCheckSeverity.WARN
    assert "within chance" in short.description


def test_a_warning_gate_is_declared_non_blocking_and_a_blocking_gate_never_warns():
    block, warn = GATES["coverage"], GATES["coverage_near"]
    assert block.spec.blocking and not warn.spec.blocking
    assert warn.result(False, "x").severity == dg.AssetCheckSeverity.WARN
    assert block.result(False, "x").severity == dg.AssetCheckSeverity.ERROR
    with pytest.raises(ValueError, match="blocking gate"):
        block.result(False, "x", severity=dg.AssetCheckSeverity.WARN)
