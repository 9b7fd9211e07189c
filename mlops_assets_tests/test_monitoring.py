"""Monitoring decisions with known answers: forecast scoring on arrived actuals, the drift
verdict, segment-share drift, and stale models under a controlled clock."""

import numpy as np
import pandas as pd
import pytest

from mlops_assets.core import forecast_performance as fp
from mlops_assets.core import monitoring
from mlops_assets.core.backtest import mase_scale
from mlops_assets.core.drift import DriftSettings, drift_report
from mlops_assets_tests.stubs import lines

S = DriftSettings()


def history(days: int = 56, level: float = 100.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    periods = pd.date_range("2024-01-01", periods=days, freq="D")
    week = np.array([0.8, 0.9, 1.0, 1.0, 1.1, 1.4, 1.2])[periods.dayofweek]
    return pd.DataFrame(
        {"series_id": "total", "period": periods, "revenue": level * week * rng.lognormal(0, 0.05, days)}
    )


def issue(actuals: pd.DataFrame, origin: str, horizon: int, version: str, backtest_mase: float):
    """A seasonal naive forecast issued at `origin` (what the champion would have said)."""
    past = actuals[actuals["period"] <= origin].set_index("period")["revenue"]
    periods = pd.date_range(pd.Timestamp(origin) + pd.Timedelta(days=1), periods=horizon, freq="D")
    mean = np.array([past.iloc[-7 + (i % 7)] for i in range(horizon)])
    frame = pd.DataFrame(
        {
            "series_id": "total",
            "period": periods,
            "step": np.arange(1, horizon + 1),
            "model": "seasonal_naive",
            "mean": mean,
            "lower80": mean * 0.9,
            "upper80": mean * 1.1,
            "lower95": mean * 0.85,
            "upper95": mean * 1.15,
        }
    )
    return fp.issued(frame, pd.Timestamp(origin), version, {"total": {"mase": backtest_mase}})


def test_forecasts_are_scored_on_arrived_actuals_with_the_backtests_mase_scale():
    actuals = history(70)
    origin = "2024-02-25"  # day 56; 14 days of actuals arrived since
    archive = issue(actuals, origin, 28, "3", backtest_mase=0.8)
    table = fp.score(archive, actuals, season=7, window=28, tolerance=0.2).set_index("series_id")
    row = table.loc["total"]
    assert row["periods"] == 14 and row["first_period"] == pd.Timestamp("2024-02-26")
    # by hand: errors over the 14 arrived days, scaled by the seasonal naive MAE up to the origin
    past = actuals[actuals["period"] <= origin]["revenue"].to_numpy()
    joined = archive.merge(actuals, on=["series_id", "period"])
    err = joined["mean"] - joined["revenue"]
    assert row["mase"] == pytest.approx(np.abs(err).mean() / mase_scale(past, 7))
    assert row["bias"] == pytest.approx(err.mean())
    assert row["mape"] == pytest.approx(100 * np.mean(np.abs(err) / joined["revenue"]))
    inside = (joined["lower80"] <= joined["revenue"]) & (joined["revenue"] <= joined["upper80"])
    assert row["coverage80"] == pytest.approx(inside.mean())
    assert row["mase_ratio"] == pytest.approx(row["mase"] / 0.8) and row["model_versions"] == "3"


def test_a_level_drop_in_actuals_is_degradation_and_steady_actuals_are_not():
    actuals = history(84)
    archive = issue(actuals, "2024-02-25", 28, "1", backtest_mase=1.0)
    steady = fp.score(archive, actuals, 7, 28, 0.2)
    ok, ratio, text = fp.degradation(steady, 0.2)
    assert not ok and ratio < 1.2 and "is within" in text
    dropped = actuals.assign(
        revenue=np.where(actuals["period"] > "2024-02-25", actuals["revenue"] * 0.5, actuals["revenue"])
    )
    table = fp.score(archive, dropped, 7, 28, 0.2)
    bad, ratio, text = fp.degradation(table, 0.2)
    assert bad and ratio > 1.2 and table["degraded"].all() and "exceeds" in text


def test_each_period_is_scored_with_the_latest_forecast_issued_before_it():
    actuals = history(84)
    old = issue(actuals, "2024-02-11", 28, "1", 1.0)
    new = issue(actuals, "2024-02-25", 28, "2", 1.0)
    picked = fp.latest_per_period(pd.concat([old, new]))
    assert set(picked[picked["period"] <= "2024-02-25"]["model_version"]) == {"1"}
    assert set(picked[picked["period"] > "2024-02-25"]["model_version"]) == {"2"}
    assert not picked.duplicated(["series_id", "period"]).any()


def test_nothing_to_score_before_actuals_arrive():
    actuals = history(56)
    archive = issue(actuals, "2024-02-25", 28, "1", 1.0)  # forecasts start after the last actual
    table = fp.score(archive, actuals, 7, 28, 0.2)
    assert table.empty and not fp.degradation(table, 0.2)[0]


def test_the_mase_scale_of_every_series_and_origin_at_once_is_backtests_own():
    """The vectorised scale (one join, two shifts) equals backtest.mase_scale per series and
    origin: seasonal lag past one season of history, lag 1 up to it, NaN for one period."""
    rng = np.random.default_rng(4)
    periods = pd.date_range("2024-01-01", periods=40, freq="D")
    actuals = pd.concat(
        [
            pd.DataFrame({"series_id": sid, "period": periods[-n:], "revenue": rng.poisson(5, n) * 1.0})
            for sid, n in (("long", 40), ("short", 6), ("one", 1))
        ]
    )
    keys = pd.DataFrame(
        {
            "series_id": ["long", "long", "short", "one", "long"],
            "origin": [periods[20], periods[39], periods[39], periods[39], periods[20]],
        }
    )
    got = fp._scales(actuals, keys, 7)
    for sid, origin in keys.drop_duplicates().itertuples(index=False):
        train = actuals[(actuals["series_id"] == sid) & (actuals["period"] <= origin)]["revenue"].to_numpy()
        want = mase_scale(train, 7) if len(train) > 1 else np.nan
        np.testing.assert_allclose(got.loc[(sid, origin)], want, equal_nan=True)
    assert np.isfinite(got.loc[("long", periods[39])]) and np.isnan(got.loc[("one", periods[39])])


def report(dataset: str, shifted: int, unshifted: int, seed: int = 0, rows: int = 5000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame({f"f{i}": rng.normal(0, 1, rows) for i in range(shifted + unshifted)})
    cur = pd.DataFrame(
        {f"f{i}": rng.normal(1.0 if i < shifted else 0, 1, rows) for i in range(len(ref.columns))}
    )
    return drift_report(ref, cur, S).assign(dataset=dataset)


def test_drift_verdict_levels():
    assert monitoring.verdict(report("customer_features", 0, 20), S).level == monitoring.NONE
    significant = monitoring.verdict(report("customer_features", 10, 10), S)
    assert significant.level == monitoring.SIGNIFICANT
    assert significant.drifted_datasets == ["customer_features"]
    assert sorted(significant.drifted_columns) == sorted(f"customer_features.f{i}" for i in range(10))
    # one drifted column of twenty, a shift of 0.15 sd: moderate (drifts by Wasserstein, PSI < 0.2)
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({f"f{i}": rng.normal(0, 1, 5000) for i in range(20)})
    cur = ref.sample(frac=1, random_state=2).reset_index(drop=True).copy()
    cur["f0"] = cur["f0"] + 0.15
    mild = monitoring.verdict(drift_report(ref, cur, S).assign(dataset="x"), S)
    assert mild.level == monitoring.MODERATE and mild.drifted_columns == ["x.f0"], mild
    assert monitoring.verdict(pd.DataFrame(columns=["dataset", "psi", "drifted"]), S).level == "none"


def test_segment_share_drift_is_psi_of_the_shares():
    then = pd.Series({0: 0.5, 1: 0.3, 2: 0.2})
    assert monitoring.segment_shift(then, then * 3, S)["psi"] == pytest.approx(0.0)
    row = monitoring.segment_shift(then, pd.Series({0: 0.2, 1: 0.3, 2: 0.5}), S)
    expected = sum((c - r) * np.log(c / r) for r, c in [(0.5, 0.2), (0.3, 0.3), (0.2, 0.5)])
    assert row["psi"] == pytest.approx(expected) and row["drifted"] and row["method"] == "psi"


def test_stale_models_under_a_controlled_clock():
    day = 86_400.0
    trained = {"sales_forecaster": 1_000 * day, "customer_segmenter": 1_005 * day, "never": None}
    assert monitoring.stale_models(trained, 1_006 * day, 7) == {}
    stale = monitoring.stale_models(trained, 1_007.5 * day, 7)
    assert list(stale) == ["sales_forecaster"] and "7.5 days ago" in stale["sales_forecaster"]
    assert set(monitoring.stale_models(trained, 1_013 * day, 7)) == {"sales_forecaster", "customer_segmenter"}


def test_transaction_columns_cover_the_last_window_only():
    frame = lines("2024-01-01", 60)
    cols = monitoring.transaction_columns(frame, pd.Timestamp("2024-03-01"), 28)
    expected = frame[(frame["order_ts"] > "2024-02-02") & (frame["order_ts"] <= "2024-03-01")]
    assert len(cols) == len(expected)
    assert set(cols["customer_type"]) == {"guest", "member"}
    assert list(cols.columns) == [
        "quantity", "unit_price", "amount", "store_id", "product_id", "order_hour", "customer_type",
    ]  # fmt: skip


def test_feature_columns_leave_out_keys_dates_and_flags():
    table = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "as_of": pd.to_datetime(["2024-01-01"] * 2),
            "recency_days": [1.0, 2.0],
            "favourite_category": ["Toys", "Home"],
            "is_guest": [True, False],
        }
    )
    assert list(monitoring.feature_columns(table).columns) == ["recency_days", "favourite_category"]


def test_a_dataset_too_small_for_the_domain_classifier_gets_a_note_not_a_crash():
    """CDNOW has one product: one product-feature row on each side. The column tests still run;
    the classifier, which three folds cannot even split, is skipped with a note."""
    from types import SimpleNamespace

    from mlops_assets.assets.monitoring import drift_tables
    from mlops_assets.core.drift import MIN_CLASSIFIER_ROWS, DriftSettings

    rng = np.random.default_rng(0)
    big = pd.DataFrame({"monetary": rng.gamma(2, 50, 500), "frequency": rng.poisson(3, 500)})
    one = pd.DataFrame({"revenue_28d": [10.0], "units_28d": [3.0]})
    snapshots = {"customer_features": big, "product_features": one}
    champion = SimpleNamespace(number="1", reference=snapshots.get)
    current = {"transactions": pd.DataFrame(), "customer_features": big.sample(frac=1, random_state=1),
               "product_features": one * 1.1}  # fmt: skip
    champions = {"sales_forecaster": champion, "customer_segmenter": champion}
    table, notes, classifier = drift_tables(champions, current, pd.DataFrame(), DriftSettings(), 0.55)
    assert set(table["dataset"]) == {"customer_features", "product_features"}
    assert set(classifier) == {"customer_features"} and classifier["customer_features"].auc < 0.55
    assert any(n.startswith("product_features: 1 rows") and str(MIN_CLASSIFIER_ROWS) in n for n in notes)
