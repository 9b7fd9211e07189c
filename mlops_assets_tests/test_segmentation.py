"""Segmenter core: quality measures against sklearn, choice between k-means and DBSCAN,
stability, names from RFM profiles, and scoring through the saved pipeline."""

import pickle
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

from mlops_assets.core.cluster_quality import NOISE, SilhouetteSample, k_distance_eps, knee
from mlops_assets.core.customer_features import customer_features
from mlops_assets.core.segment_names import member_scores, mid_rank_pct, name_segments, rule_name
from mlops_assets.core.segmentation import SegmentSpec, SignedLog, _fit_chosen, fit_segmenter
from mlops_assets_tests.realdata import cdnow_lines

# (count, recency days, purchases a year, order value, tenure days) of three kinds of customer
SMALL_BASE_SEED = 19  # a draw whose chosen k (7) is unstable (bootstrap ARI 0.60); k=6 holds (0.98)
KINDS = {"best": (150, 5, 30, 200, 600), "lapsed": (300, 400, 0, 60, 650), "new": (150, 10, 1.5, 80, 20)}


def customers(seed: int = 0, scale: float = 1.0, kinds: dict = KINDS) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for name, (n, rec, freq, aov, ten) in kinds.items():
        n = int(n * scale)
        frequency = np.maximum(rng.poisson(freq, n), 1 if freq >= 1 else 0)
        value = rng.lognormal(np.log(aov), 0.15, n)
        parts.append(
            pd.DataFrame(
                {
                    "kind": name,
                    "recency_days": rng.normal(rec, rec * 0.1 + 1, n).clip(0),
                    "frequency": frequency,
                    "monetary": frequency * value,
                    "avg_order_value": value,
                    "tenure_days": rng.normal(ten, ten * 0.1 + 1, n).clip(1),
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    frame.insert(0, "customer_id", [f"C{i:05d}" for i in range(len(frame))])
    return frame


def test_silhouette_sample_matches_sklearn_with_and_without_noise():
    x, _ = make_blobs(600, centers=4, cluster_std=1.5, random_state=1)
    sil = SilhouetteSample(x)
    for labels in (
        np.random.default_rng(0).integers(0, 3, 600),
        np.repeat([0, 1, 2, 3], 150),
        make_blobs(600, centers=4, random_state=1)[1],
    ):
        assert sil.score(labels) == pytest.approx(silhouette_score(x, labels), abs=1e-5)
    noisy = make_blobs(600, centers=4, random_state=1)[1].copy()
    noisy[::7] = NOISE
    keep = noisy != NOISE
    assert sil.score(noisy) == pytest.approx(silhouette_score(x[keep], noisy[keep]), abs=1e-5)
    assert np.isnan(sil.score(np.zeros(600, dtype=int)))  # one cluster: undefined


def test_knee_of_a_flat_then_steep_curve():
    curve = np.concatenate([np.linspace(0, 1, 90), np.linspace(1, 30, 10)])
    assert 88 <= knee(curve) <= 91
    x, _ = make_blobs(500, centers=3, cluster_std=0.3, random_state=0)
    eps = k_distance_eps(x, 6)
    assert 0.05 < eps < 2.0  # inside the blobs' spread, far below the distance between them


def test_signed_log_picks_skewed_columns_at_fit_and_keeps_them():
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(0, 1, 1000), rng.lognormal(0, 1.5, 1000), -rng.lognormal(0, 1.5, 1000)])
    step = SignedLog(1.0).fit(x)
    assert list(step.columns_) == [1, 2]
    out = step.transform(x[:1])  # one new row: the training choice, not a fresh one
    assert out[0, 0] == x[0, 0] and out[0, 1] == pytest.approx(np.log1p(x[0, 1]))
    assert out[0, 2] == pytest.approx(-np.log1p(-x[0, 2]))


def test_kmeans_finds_the_three_kinds_stably_and_names_them():
    table = customers()
    # silhouette alone (no tolerance towards more segments) finds the three kinds
    segmenter = fit_segmenter(table, SegmentSpec(k_min=2, k_max=6, resamples=5, silhouette_tolerance=0.0))
    assert segmenter.algorithm == "kmeans" and segmenter.params["k"] == 3
    assert (
        "k-means k=3: the largest k with silhouette" in segmenter.reason and "best (k=3" in segmenter.reason
    )
    m = segmenter.metrics
    assert m["silhouette"] > 0.6 and m["stability_ari"] > 0.95 and m["davies_bouldin"] < 1
    assert set(segmenter.sweep["k"][segmenter.sweep["algorithm"] == "kmeans"]) == set(range(2, 7))
    assigned = segmenter.assign(table).assign(kind=table["kind"])
    names = assigned.groupby("kind")["segment_name"].agg(lambda s: s.mode()[0])
    assert names.to_dict() == {"best": "champions", "lapsed": "lost", "new": "new"}
    purity = assigned.groupby("kind")["segment_id"].agg(lambda s: s.value_counts(normalize=True).iloc[0])
    assert (purity > 0.95).all()
    # ids rank value: the best customers are segment 0
    assert assigned.loc[assigned["kind"] == "best", "segment_id"].mode()[0] == 0
    profile = segmenter.profile.set_index("segment_name")
    assert profile["customers"].sum() == len(table) and profile["share"].sum() == pytest.approx(1)
    assert profile.loc["champions", "revenue_share"] > 0.8


def test_scoring_new_customers_uses_the_training_transformation():
    segmenter = fit_segmenter(customers(), SegmentSpec(k_max=4, resamples=3))
    restored = pickle.loads(pickle.dumps(segmenter))
    fresh = customers(seed=5, scale=0.05)  # 30 new customers of the same kinds
    pd.testing.assert_frame_equal(restored.assign(fresh), segmenter.assign(fresh))
    one = restored.assign(fresh.iloc[[0]])  # a single row cannot refit a scaler: it must not
    assert one["segment_name"].iloc[0] == "champions"
    training = segmenter.assign(customers())
    assert (training["segment_id"].to_numpy() == segmenter.segment_ids(customers())).all()


def test_dbscan_wins_when_dense_groups_sit_in_scattered_noise():
    rng = np.random.default_rng(3)
    table = customers(kinds={"best": (200, 5, 30, 200, 600), "lapsed": (400, 400, 0, 60, 650)})
    scattered = pd.DataFrame(
        {
            "customer_id": [f"N{i:04d}" for i in range(40)],
            "kind": "scattered",
            "recency_days": rng.uniform(0, 700, 40),
            "frequency": rng.integers(0, 60, 40),
            "monetary": rng.uniform(0, 20_000, 40),
            "avg_order_value": rng.uniform(10, 500, 40),
            "tenure_days": rng.uniform(1, 700, 40),
        }
    )
    table = pd.concat([table, scattered], ignore_index=True)
    segmenter = fit_segmenter(table, SegmentSpec(k_min=2, k_max=5, resamples=3, dbscan_min_samples=8))
    dbscan = segmenter.sweep[segmenter.sweep["algorithm"] == "dbscan"].iloc[0]
    best_kmeans = segmenter.sweep[segmenter.sweep["algorithm"] == "kmeans"]["silhouette"].max()
    assert dbscan["silhouette"] > best_kmeans
    assert segmenter.algorithm == "dbscan" and segmenter.reason.startswith("DBSCAN silhouette")
    assigned = segmenter.assign(table)
    assert 0 < (assigned["segment_id"] == NOISE).mean() <= 0.2
    assert set(assigned.loc[assigned["segment_id"] == NOISE, "segment_name"]) == {"outliers"}
    far = table.iloc[[0]].assign(recency_days=5_000.0, frequency=10_000, monetary=1e9)
    assert segmenter.assign(far)["segment_id"].iloc[0] == NOISE


def test_dbscan_with_too_much_noise_loses_with_its_reason():
    segmenter = fit_segmenter(customers(), SegmentSpec(k_max=8, resamples=3, max_noise_share=0.0))
    assert segmenter.algorithm == "kmeans"
    assert "customers as noise (> 0%)" in segmenter.reason


def test_naming_rule_is_deterministic_and_ranked():
    assert rule_name(4.5, 4.5, 3) == "champions"
    assert rule_name(4.5, 1.2, 1.5) == "new" and rule_name(3.1, 1.2, 1.9) == "new"
    assert rule_name(3.2, 3.4, 4) == "loyal"
    assert rule_name(3.5, 1.5, 4) == "promising"
    assert rule_name(1.8, 3.5, 4) == "at risk"
    assert rule_name(2.4, 1.5, 4) == "hibernating"
    assert rule_name(1.2, 1.0, 4) == "lost"
    v = np.array([3, 1, np.nan, 3, 2, 5, 1.0])
    expected = (pd.Series(v).rank(method="average") - 0.5) / 6
    np.testing.assert_allclose(mid_rank_pct(v), expected.to_numpy())
    # two segments that earn the same name are told apart by spend
    table = customers()
    kind = table["kind"].map({"best": 0, "lapsed": 2, "new": 3}).to_numpy()
    labels = np.where((kind == 0) & (np.arange(len(table)) % 2 == 1), 1, kind)  # best in two halves
    relabel, names = name_segments(table, labels)
    halves = {names[relabel[label]]: table.loc[labels == label, "monetary"].median() for label in (0, 1)}
    assert set(halves) == {"champions (high spend)", "champions (low spend)"}
    assert halves["champions (high spend)"] > halves["champions (low spend)"]
    assert {names[relabel[2]], names[relabel[3]]} == {"lost", "new"}
    assert name_segments(table, labels) == (relabel, names)  # deterministic
    scores = member_scores(table)
    assert (
        scores.loc[table["kind"] == "best", "R"].mean() > 4
        and scores.loc[table["kind"] == "new", "T"].max() <= 2
    )


def test_missing_feature_is_named():
    with pytest.raises(ValueError, match="clv_12m"):
        fit_segmenter(customers(), replace(SegmentSpec(), features=("recency_days", "clv_12m")))


# --- a real customer base -----------------------------------------------------------------


@pytest.fixture(scope="module")
def cdnow_features() -> pd.DataFrame:
    """CDNOW's 23,570 customers as the feature store computes them, a day after the last order."""
    lines = cdnow_lines()
    return customer_features(lines, as_of=lines["order_ts"].max() + pd.Timedelta(days=1))


def test_real_customer_base_gets_actionable_segments(cdnow_features):
    segmenter = fit_segmenter(cdnow_features, SegmentSpec())
    m, profile = segmenter.metrics, segmenter.profile
    assert 3 <= m["segments"] <= 8 and profile["share"].min() >= 0.02
    assert m["stability_ari"] >= 0.8
    # silhouette in a standardized log-RFM space (sklearn's), not only in the pipeline's own
    rfm = np.log1p(cdnow_features[["recency_days", "frequency", "monetary"]].to_numpy(dtype=float))
    z = StandardScaler().fit_transform(rfm)
    ids = segmenter.segment_ids(cdnow_features)
    assert silhouette_score(z, ids, sample_size=5000, random_state=0) >= 0.35
    # names follow the RFM scores that the profile shows, and differ between segments
    for row in profile.itertuples():
        assert row.segment_name.split(" (")[0] == rule_name(row.R_score, row.F_score, row.T_score)
    assert profile["segment_name"].nunique() == len(profile)
    assert profile["R_score"].iloc[0] > profile["R_score"].iloc[-1]  # ranked by value


def test_silhouette_alone_would_take_two_segments_and_k_can_still_be_forced(cdnow_features):
    segmenter = fit_segmenter(cdnow_features, SegmentSpec(k_min=2))
    sweep = segmenter.sweep[segmenter.sweep["algorithm"] == "kmeans"].set_index("k")
    assert sweep["silhouette"].idxmax() == 2  # the coarse active / lapsed split scores best...
    assert segmenter.params["k"] > 2  # ...and the rule takes more segments within the tolerance
    forced = fit_segmenter(cdnow_features, SegmentSpec(k_min=4, k_max=4, algorithms=("kmeans",)))
    assert forced.params["k"] == 4 and forced.metrics["segments"] == 4


def test_a_k_whose_full_refit_leaves_a_tiny_segment_gives_way_to_the_next():
    """The sweep runs on a sample; refitted on everyone, a k can leave a segment under
    min_segment_share. That k then leaves the choice and the next one is fitted."""
    rng = np.random.default_rng(0)
    centres = [(0, 0), (10, 0), (0, 10), (5, 5)]
    sizes = [400, 400, 400, 12]  # the middle blob is 1% of the points
    z = np.vstack([rng.normal(c, 0.5, (n, 2)) for c, n in zip(centres, sizes, strict=True)])
    table = pd.DataFrame(
        {
            "algorithm": "kmeans",
            "k": [3, 4],
            "eps": np.nan,
            "silhouette": [0.80, 0.79],
            "smallest_share": [0.30, 0.05],  # as a sample without the far blob's points saw it
        }
    )
    spec = SegmentSpec(k_min=3, k_max=4, min_segment_share=0.02, algorithms=("kmeans",))
    row, reason, model, labels = _fit_chosen(table, spec, z, z)
    assert row["k"] == 3 and np.bincount(labels).min() / len(z) >= 0.02
    assert table.loc[table["k"] == 4, "smallest_share"].iloc[0] < 0.02  # measured on everyone
    assert "k=[4] left out" in reason


def small_base(seed: int) -> pd.DataFrame:
    """200 customers drawn from CDNOW, as the feature store computes them: a small shop's base."""
    lines = cdnow_lines()
    ids = np.random.default_rng(seed).choice(lines["customer_id"].unique(), 200, replace=False)
    part = lines[lines["customer_id"].isin(ids)]
    return customer_features(part, as_of=lines["order_ts"].max() + pd.Timedelta(days=1))


def test_stability_enters_the_choice_so_a_small_base_gets_fewer_segments_that_hold():
    base = small_base(SMALL_BASE_SEED)
    # the choice without stability (every candidate accepted): the gate would have blocked it
    unchecked = fit_segmenter(base, SegmentSpec(min_stability_ari=0.0))
    assert unchecked.metrics["stability_ari"] < 0.8
    chosen = fit_segmenter(base, SegmentSpec())
    assert chosen.metrics["stability_ari"] >= 0.8
    assert chosen.metrics["segments"] < unchecked.metrics["segments"]
    assert "left out: bootstrap ARI under 0.8" in chosen.reason
    swept = chosen.sweep.set_index(["algorithm", "k"])["stability_ari"]
    assert swept[("kmeans", unchecked.params["k"])] == pytest.approx(unchecked.metrics["stability_ari"])


def test_no_stable_candidate_blocks_with_one_sentence_saying_what_to_change():
    from mlops_assets.assets.segmentation import gate_results
    from mlops_assets.settings import SegmentSettings

    settings = SegmentSettings(min_stability_ari=0.999)  # no segmentation of these holds that
    base = small_base(SMALL_BASE_SEED)
    segmenter = fit_segmenter(base, SegmentSpec(min_stability_ari=settings.min_stability_ari))
    assert "no candidate is stable under resampling" in segmenter.reason
    tried = segmenter.sweep["stability_ari"].dropna()
    assert len(tried) >= 2 and segmenter.metrics["stability_ari"] == pytest.approx(tried.max())
    stable = next(
        r for r in gate_results(segmenter, settings) if r.check_name == "segments_stable_under_resampling"
    )
    assert not stable.passed and stable.severity.value == "ERROR"
    assert stable.description.startswith("no candidate segmentation (k-means k=3..8, DBSCAN) is stable")
    assert "To change: lower segment.k_max" in stable.description
