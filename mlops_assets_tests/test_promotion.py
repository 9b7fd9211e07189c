"""Champion / challenger statistics without MLflow: the Diebold-Mariano comparison of
forecasters on the same folds, and the segmenter tolerance rule."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from mlops_assets.core.backtest import backtest, candidates
from mlops_assets.core.forecast_models import AutoEts
from mlops_assets.core.promotion import (
    compare_forecasters,
    compare_segmenters,
    diebold_mariano,
    panel_diebold_mariano,
)

H, FOLDS = 14, 3


def weekly_series(seed: int, n: int = 240) -> pd.Series:
    rng = np.random.default_rng(seed)
    days = pd.date_range("2023-01-02", periods=n, freq="D")
    week = np.array([0.8, 0.85, 0.9, 1.0, 1.2, 1.5, 1.1])[days.dayofweek]
    return pd.Series(1000 * week * (1 + 0.002 * np.arange(n)) * rng.lognormal(0, 0.08, n), index=days)


def folds_of(y: pd.Series) -> dict:
    return backtest(y, candidates(["ets"], "D", "US"), H, FOLDS, ensemble_size=0).forecasts


def test_diebold_mariano_sign_size_and_interval():
    rng = np.random.default_rng(0)
    worse, better = np.abs(rng.normal(0, 1.3, 400)), np.abs(rng.normal(0, 1.0, 400))
    result = diebold_mariano(worse, better, h=7)
    assert result["p_value"] < 0.001 and result["ci_low"] > 0 and result["effect_size"] > 0.15
    flipped = diebold_mariano(better, worse, h=7)
    assert flipped["p_value"] > 0.999 and flipped["dm_statistic"] == pytest.approx(-result["dm_statistic"])
    assert np.isnan(diebold_mariano(better, better, h=7)["p_value"])  # no difference: no test
    # under the null the one-sided test rejects at about its level (HAC over h - 1 lags)
    rejections = [
        diebold_mariano(np.abs(rng.normal(0, 1, 200)), np.abs(rng.normal(0, 1, 200)), h=7)["p_value"] < 0.05
        for _ in range(300)
    ]
    assert 0.01 < np.mean(rejections) < 0.09


def test_a_forecaster_beating_seasonal_naive_is_promoted_with_its_statistics():
    series = {f"s{i}": weekly_series(i) for i in range(3)}
    folds = {sid: folds_of(y) for sid, y in series.items()}
    naive = dict.fromkeys(series, "seasonal_naive")
    ets = dict.fromkeys(series, "ets")
    decision = compare_forecasters(naive, ets, series, folds, H, 7, alpha=0.05)
    assert decision.promote and decision.reason.startswith("challenger better: Diebold-Mariano")
    assert (
        decision.stats["p_value"] < 0.05 and decision.stats["n"] == FOLDS * H
    )  # periods: 3 series averaged in each
    assert decision.stats["challenger_mean_scaled_loss"] < decision.stats["champion_mean_scaled_loss"]
    backwards = compare_forecasters(ets, naive, series, folds, H, 7, alpha=0.05)
    assert not backwards.promote and "not better at level 0.05" in backwards.reason
    same = compare_forecasters(ets, ets, series, folds, H, 7, alpha=0.05)
    assert same.promote and "refitted on newer data" in same.reason
    # trained on newer data: promoted unless the champion's choices test better
    refresh = compare_forecasters(ets, naive, series, folds, H, 7, alpha=0.05, newer=False)
    assert not refresh.promote
    worse = compare_forecasters(ets, naive, series, folds, H, 7, alpha=0.05, newer=True)
    assert not worse.promote and "worse at level 0.05 despite newer data" in worse.reason


def test_a_challenger_on_newer_data_is_a_refresh_unless_significantly_worse():
    rng = np.random.default_rng(3)
    series = {f"s{i}": weekly_series(i + 20) for i in range(3)}
    folds = {}
    for sid, y in series.items():
        folds[sid] = folds_of(y)
        for key, fc in list(folds[sid].items()):  # a near twin of ets: indistinguishable
            if key[0] == "ets":
                noise = rng.normal(1, 0.002, len(fc.mean))
                folds[sid][("ets_twin", key[1])] = replace(fc, mean=fc.mean * noise)
    champion, challenger = dict.fromkeys(series, "ets"), dict.fromkeys(series, "ets_twin")
    same_data = compare_forecasters(champion, challenger, series, folds, H, 7, alpha=0.05)
    assert not same_data.promote and "not better" in same_data.reason
    newer = compare_forecasters(champion, challenger, series, folds, H, 7, alpha=0.05, newer=True)
    assert newer.promote and newer.reason.startswith("refresh: trained on newer data")


def test_a_challenger_trained_on_shuffled_targets_is_rejected():
    """Each fold's training targets shuffled (the calendar no longer means anything), its
    forecasts judged on the real actuals of the same folds as the champion's."""
    rng = np.random.default_rng(1)
    series = {f"s{i}": weekly_series(i + 10) for i in range(3)}
    folds = {}
    for sid, y in series.items():
        folds[sid] = folds_of(y)
        for fold in range(FOLDS):
            origin = len(y) - H * (FOLDS - fold)
            shuffled = pd.Series(rng.permutation(y.iloc[:origin].to_numpy()), index=y.index[:origin])
            folds[sid][("ets_shuffled", fold)] = AutoEts("D").fit(shuffled).predict(H)
    champion = dict.fromkeys(series, "ets")
    challenger = dict.fromkeys(series, "ets_shuffled")
    decision = compare_forecasters(champion, challenger, series, folds, H, 7, alpha=0.05)
    assert not decision.promote
    assert decision.stats["p_value"] > 0.5 and decision.stats["effect_size"] < -0.2  # much worse
    assert decision.stats["ci_high"] < 0  # the interval says worse, not merely "not better"


def test_panel_test_keeps_its_size_when_every_series_shares_one_shock():
    """Loss differences of 10 series driven by one common shock per period, no true difference:
    pooling series x periods as independent rejects far too often; averaging per period first
    rejects at about the test's level."""
    rng = np.random.default_rng(7)
    series, periods, alpha = 10, 84, 0.05
    index = pd.MultiIndex.from_product([range(series), range(periods)]).to_flat_index()
    pooled, panel = [], []
    for _ in range(300):
        common = np.tile(rng.normal(0, 1, periods), series)  # the same shock in every series
        base = 5 + common + rng.normal(0, 0.2, series * periods)
        a = pd.Series(base + rng.normal(0, 0.3, series * periods), index=index)
        b = pd.Series(base + rng.normal(0, 0.3, series * periods), index=index)
        d_common = rng.normal(0, 1, periods)  # the challenger's edge also moves with the shock
        b = b + np.tile(d_common, series)
        pooled.append(diebold_mariano(a.to_numpy(), b.to_numpy(), h=7)["p_value"] < alpha)
        panel.append(panel_diebold_mariano(a, b, h=7)["p_value"] < alpha)
    assert np.mean(pooled) > 2 * alpha  # the old pooled test: overconfident
    assert 0.01 <= np.mean(panel) <= 0.09  # near alpha


def test_segmenter_may_trail_by_the_tolerance_only():
    champion = {"silhouette": 0.50, "stability_ari": 0.95}
    assert compare_segmenters(champion, {"silhouette": 0.49, "stability_ari": 0.94}, 0.02).promote
    worse = compare_segmenters(champion, {"silhouette": 0.40, "stability_ari": 0.96}, 0.02)
    assert not worse.promote and "silhouette 0.400 < champion 0.500 - 0.02" in worse.reason
    unstable = compare_segmenters(champion, {"silhouette": 0.55, "stability_ari": 0.80}, 0.02)
    assert not unstable.promote and "stability_ari" in unstable.reason
