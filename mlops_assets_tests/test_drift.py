"""Drift statistics against scipy's values, Evidently's method choice by sample size, and
shifted columns found among unshifted ones on large and small samples."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from mlops_assets.core.drift import (
    DriftSettings,
    Reference,
    bin_shares,
    dataset_drift,
    drift_report,
    psi,
    psi_edges,
    wasserstein_sorted,
)


def frame(rows: int, seed: int, shifted: bool, numeric: int = 20, categorical: int = 4) -> pd.DataFrame:
    """Half the numeric columns (and half the categorical) move when `shifted`."""
    rng = np.random.default_rng(seed)
    cols = {}
    for k in range(numeric):
        shift = 0.6 if shifted and k < numeric // 2 else 0.0
        cols[f"x{k}"] = rng.lognormal(shift, 0.5, rows) if k % 2 else rng.normal(shift, 1, rows)
    for k in range(categorical):
        p = np.array([0.4, 0.3, 0.2, 0.1])
        cols[f"c{k}"] = rng.choice(
            list("abcd"), size=rows, p=p[::-1] if shifted and k < categorical // 2 else p
        )
    return pd.DataFrame(cols)


@pytest.mark.parametrize("n, m", [(1000, 1000), (1000, 777), (7, 3), (1, 5), (400, 401)])
def test_wasserstein_from_sorted_samples_equals_scipy(n, m):
    rng = np.random.default_rng(n + m)
    u = rng.integers(0, 6, n).astype(float)  # ties
    v = rng.normal(1.0, 2.0, m)
    assert wasserstein_sorted(np.sort(u), np.sort(v)) == pytest.approx(
        stats.wasserstein_distance(u, v), rel=1e-12
    )


def test_psi_bins_are_reference_quantiles_and_psi_matches_its_formula():
    rng = np.random.default_rng(0)
    ref = np.sort(rng.normal(0, 1, 5001))
    edges = psi_edges(ref, 10)
    np.testing.assert_allclose(edges, np.quantile(ref, np.linspace(0, 1, 11)[1:-1]))
    shares = bin_shares(ref, edges)
    assert shares.sum() == pytest.approx(1) and np.allclose(shares, 0.1, atol=0.001)
    cur = np.sort(rng.normal(0.5, 1, 3000))
    c = np.histogram(cur, np.concatenate([[-np.inf], edges, [np.inf]]))[0] / len(cur)
    assert psi(shares, bin_shares(cur, edges)) == pytest.approx(np.sum((c - shares) * np.log(c / shares)))
    assert psi(shares, shares) == 0


def test_small_samples_use_ks_and_chi_square_with_scipys_values():
    ref, cur = frame(500, 0, False), frame(500, 1, True)
    report = drift_report(ref, cur).set_index("column")
    assert set(report.loc[[f"x{k}" for k in range(20)], "method"]) == {"ks"}
    ks = stats.ks_2samp(ref["x3"], cur["x3"])
    assert report.loc["x3", "statistic"] == pytest.approx(ks.statistic)
    assert report.loc["x3", "p_value"] == pytest.approx(ks.pvalue)
    r = ref["c0"].value_counts().reindex(list("abcd"), fill_value=0)
    c = cur["c0"].value_counts().reindex(list("abcd"), fill_value=0)
    chi = stats.chisquare(c, r / r.sum() * c.sum())
    assert report.loc["c0", "method"] == "chi_square"
    assert report.loc["c0", "statistic"] == pytest.approx(chi.statistic)
    assert report.loc["c0", "p_value"] == pytest.approx(chi.pvalue)


def test_large_samples_use_normed_wasserstein_and_jensen_shannon_with_scipys_values():
    ref, cur = frame(5000, 0, False), frame(4000, 1, True)
    report = drift_report(ref, cur).set_index("column")
    assert (
        report.loc["x4", "method"] == "wasserstein_normed" and report.loc["c1", "method"] == "jensen_shannon"
    )
    expected = stats.wasserstein_distance(ref["x4"], cur["x4"]) / ref["x4"].std()
    assert report.loc["x4", "statistic"] == pytest.approx(expected, rel=1e-9)
    r = ref["c1"].value_counts(normalize=True).reindex(list("abcd"))
    c = cur["c1"].value_counts(normalize=True).reindex(list("abcd"))
    assert report.loc["c1", "statistic"] == pytest.approx(jensenshannon(r, c))
    assert report.loc["x4", "threshold"] == 0.1 and report.loc["c1", "threshold"] == 0.1


def test_ten_shifted_columns_of_twenty_are_flagged_on_large_samples():
    report = drift_report(frame(20_000, 0, False), frame(20_000, 1, True)).set_index("column")
    numeric = report.loc[[f"x{k}" for k in range(20)]]
    assert numeric["drifted"].tolist() == [True] * 10 + [False] * 10
    assert report.loc[["c0", "c1"], "drifted"].all() and not report.loc[["c2", "c3"], "drifted"].any()
    assert (numeric["psi"][:10] >= 0.2).all() and (numeric["psi"][10:] < 0.1).all()
    assert set(numeric["psi_level"][:10]) == {"significant"} and set(numeric["psi_level"][10:]) == {"none"}
    drifted, share = dataset_drift(report.reset_index())
    assert drifted and share == pytest.approx(12 / 24)


def test_ten_shifted_columns_of_twenty_are_flagged_on_small_samples():
    """KS at p < 0.05 finds every shifted column in every draw; an unshifted one is flagged at
    about the test's 5% level, as any test at that level would."""
    false_alarms = tests = 0
    for seed in range(10):
        report = drift_report(frame(300, 2 * seed, False), frame(300, 2 * seed + 1, True)).set_index("column")
        flags = report.loc[[f"x{k}" for k in range(20)], "drifted"]
        assert flags[:10].all(), seed
        false_alarms += int(flags[10:].sum())
        tests += 10
    assert false_alarms / tests <= 0.1


def test_a_prepared_reference_gives_the_same_report_and_skips_what_it_cannot_judge():
    ref, cur = frame(3000, 0, False), frame(2500, 1, True)
    prepared = Reference.of(ref)
    pd.testing.assert_frame_equal(drift_report(prepared, cur), drift_report(ref, cur))
    partial = cur.drop(columns=["x0"]).assign(x1=np.nan)
    report = drift_report(prepared, partial).set_index("column")
    assert (
        "x0" not in report.index and report.loc["x1", "method"] == "none" and not report.loc["x1", "drifted"]
    )
    strict = DriftSettings(wasserstein_threshold=10.0)  # thresholds are settings
    assert not drift_report(ref, cur, strict).query("kind == 'numeric'")["drifted"].any()


def test_domain_classifier_finds_a_changed_correlation_the_column_tests_miss():
    from mlops_assets.core.drift import classifier_drift

    rng = np.random.default_rng(5)
    n = 4000
    x = rng.normal(0, 1, (n, 2))
    reference = pd.DataFrame({"a": x[:, 0], "b": 0.9 * x[:, 0] + np.sqrt(1 - 0.81) * x[:, 1]})
    y = rng.normal(0, 1, (n, 2))
    current = pd.DataFrame({"a": y[:, 0], "b": -0.9 * y[:, 0] + np.sqrt(1 - 0.81) * y[:, 1]})
    assert not drift_report(reference, current)["drifted"].any()  # each column alone looks the same
    moved = classifier_drift(reference, current)
    assert moved.drifted and moved.auc > 0.9
    same = classifier_drift(reference, frame_like(reference, rng))
    assert not same.drifted and abs(same.auc - 0.5) < 0.05
    # categories and numbers together; a shifted category is found and named
    ref = frame(3000, 1, shifted=False, numeric=4, categorical=2)
    cur = frame(3000, 2, shifted=False, numeric=4, categorical=2)
    cur["c0"] = np.where(rng.random(3000) < 0.5, "d", cur["c0"])
    found = classifier_drift(ref, cur)
    assert found.drifted and found.top_features[0][0] == "c0"


def frame_like(reference: pd.DataFrame, rng) -> pd.DataFrame:
    """A fresh sample from the reference's own joint distribution (rho 0.9)."""
    z = rng.normal(0, 1, (len(reference), 2))
    return pd.DataFrame({"a": z[:, 0], "b": 0.9 * z[:, 0] + np.sqrt(1 - 0.81) * z[:, 1]})
