"""Customer segmentation: one scikit-learn Pipeline (impute -> log of skewed features -> robust
scaling -> clusterer) chosen among k-means over a k range and DBSCAN, with bootstrap
stability, segment ids ranked by value and names from the RFM profile.

The choice of k: silhouette alone rewards the coarsest split of skewed RFM data (active vs
lapsed, k = 2, on every real customer base tried), which a marketer cannot act on. So k-means
takes the largest k whose silhouette is within `silhouette_tolerance` of the best k's and whose
smallest segment holds at least `min_segment_share` of the customers: more segments while they
cost almost nothing in separation, never a segment too small for a campaign.

    segmenter = fit_segmenter(customer_features, SegmentSpec())
    segmenter.assign(new_customer_features)  # customer_id, segment_id, segment_name

When customers are many, the sweep, DBSCAN and the bootstrap run on a random sample of
`sample_size` customers; the chosen k-means is then refitted on everyone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import skew
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.cluster import DBSCAN, KMeans
from sklearn.impute import SimpleImputer
from sklearn.metrics import adjusted_rand_score, calinski_harabasz_score, davies_bouldin_score
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import RobustScaler

from mlops_assets.core.cluster_quality import NOISE, SilhouetteSample, k_distance_eps
from mlops_assets.core.segment_names import NOISE_NAME, member_scores, name_segments, segment_profile

ENTITY = "customer_id"


@dataclass(frozen=True)
class SegmentSpec:
    features: tuple[str, ...] = ("recency_days", "frequency", "monetary")
    k_min: int = 3  # two segments (active / lapsed) are not actionable
    k_max: int = 8
    silhouette_tolerance: float = 0.05  # a larger k is preferred while this close to the best
    min_segment_share: float = 0.02  # a k whose smallest segment is smaller is not eligible
    algorithms: tuple[str, ...] = ("kmeans", "dbscan")
    n_init: int = 4  # k-means restarts of the chosen k (the sweep ranks k with two starts each)
    sample_size: int = 10_000  # customers the sweep, DBSCAN and the bootstrap run on
    silhouette_sample: int = 2_000  # points the silhouette is computed over
    resamples: int = 10  # bootstrap refits for stability
    skew_threshold: float = 1.0  # |skewness| above which a feature is log-transformed
    dbscan_min_samples: int | None = None  # None: twice the number of features
    max_noise_share: float = 0.2  # DBSCAN leaving more customers unassigned is not a segmentation
    min_stability_ari: float = 0.8  # a candidate whose bootstrap refits agree less is not chosen
    seed: int = 0


class SignedLog(BaseEstimator, TransformerMixin):
    """sign(x) * log1p(|x|) on the columns whose training skewness exceeds the threshold
    (chosen at fit, so scoring applies exactly the training transformation)."""

    def __init__(self, skew_threshold: float = 1.0):
        self.skew_threshold = skew_threshold

    def fit(self, x, y=None):
        x = np.asarray(x, dtype=float)
        s = np.nan_to_num(skew(x, axis=0), nan=0.0) if len(x) > 2 else np.zeros(x.shape[1])
        self.columns_ = np.flatnonzero(np.abs(s) > self.skew_threshold)
        return self

    def transform(self, x):
        x = np.array(x, dtype=float, copy=True)
        c = self.columns_
        x[:, c] = np.sign(x[:, c]) * np.log1p(np.abs(x[:, c]))
        return x


class CoreDBSCAN(BaseEstimator, ClusterMixin):
    """DBSCAN that can score new points: a point takes the cluster of its nearest core point
    when that lies within eps, else it is noise (how DBSCAN itself labels border points)."""

    def __init__(self, eps: float = 0.5, min_samples: int = 5):
        self.eps = eps
        self.min_samples = min_samples

    def fit(self, x, y=None):
        x = np.asarray(x, dtype=float)
        db = DBSCAN(eps=self.eps, min_samples=self.min_samples).fit(x)
        self.labels_ = db.labels_
        core = db.core_sample_indices_
        self.core_labels_ = db.labels_[core]
        self.nn_ = NearestNeighbors(n_neighbors=1).fit(x[core]) if len(core) else None
        return self

    def predict(self, x):
        x = np.asarray(x, dtype=float)
        if self.nn_ is None:
            return np.full(len(x), NOISE)
        dist, idx = self.nn_.kneighbors(x)
        labels = self.core_labels_[idx[:, 0]].copy()
        labels[dist[:, 0] > self.eps] = NOISE
        return labels


def preprocessing(spec: SegmentSpec) -> Pipeline:
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("log", SignedLog(spec.skew_threshold)),
            ("scale", RobustScaler()),
        ]
    )


@dataclass
class Segmenter:
    """The fitted pipeline and everything needed to read its segments."""

    features: list[str]
    pipeline: Pipeline  # preprocessing steps + the clusterer, fitted
    relabel: dict[int, int]  # clusterer label -> segment id (ranked by value)
    names: dict[int, str]  # segment id -> name
    algorithm: str
    params: dict
    metrics: dict[str, float]
    sweep: pd.DataFrame  # one row per candidate setting
    profile: pd.DataFrame  # one row per segment
    reason: str
    trained_rows: int
    trained_at: str = field(default_factory=lambda: pd.Timestamp.now(tz="UTC").isoformat())

    def segment_ids(self, features: pd.DataFrame) -> np.ndarray:
        return relabelled(self.pipeline.predict(features[self.features].to_numpy(dtype=float)), self.relabel)

    def assign(self, features: pd.DataFrame) -> pd.DataFrame:
        """Each customer's segment id and name, scored through the training transformation."""
        ids = self.segment_ids(features)
        return pd.DataFrame(
            {
                ENTITY: features[ENTITY].to_numpy(),
                "segment_id": ids,
                "segment_name": pd.array([self.names.get(int(i), NOISE_NAME) for i in ids], dtype="string"),
            }
        )


def relabelled(labels: np.ndarray, relabel: dict[int, int]) -> np.ndarray:
    """Cluster labels mapped to segment ids (an unknown label, e.g. noise, stays NOISE)."""
    labels = np.asarray(labels)
    lookup = np.full(max(relabel, default=0) + 2, NOISE)  # last slot: NOISE's own index -1
    for label, sid in relabel.items():
        lookup[label] = sid
    return lookup[labels]


def kmeans(k: int, spec: SegmentSpec, seed: int | None = None, n_init: int | None = None) -> KMeans:
    seed = spec.seed if seed is None else seed
    return KMeans(n_clusters=k, n_init=n_init or spec.n_init, random_state=seed)


def _quality(z: np.ndarray, labels: np.ndarray, sil: SilhouetteSample, n_sil: int) -> dict[str, float]:
    keep = labels != NOISE
    clusters = len(np.unique(labels[keep]))
    ok = clusters >= 2 and clusters < keep.sum()
    sizes = np.unique(labels[keep], return_counts=True)[1]
    return {
        "smallest_share": float(sizes.min() / len(labels)) if len(sizes) else np.nan,
        "silhouette": sil.score(labels[:n_sil]),
        "davies_bouldin": float(davies_bouldin_score(z[keep], labels[keep])) if ok else np.nan,
        "calinski_harabasz": float(calinski_harabasz_score(z[keep], labels[keep])) if ok else np.nan,
        "clusters": clusters,
        "noise_share": float((~keep).mean()),
    }


def sweep(z: np.ndarray, spec: SegmentSpec, sil: SilhouetteSample, n_sil: int) -> pd.DataFrame:
    """Every candidate setting on the sample, with its quality. Each k gets two k-means++ starts
    (enough to rank k; the chosen k is refitted with n_init restarts)."""
    rows = []
    if "kmeans" in spec.algorithms:
        for k in range(spec.k_min, min(spec.k_max, len(z) - 1) + 1):
            model = kmeans(k, spec, n_init=2).fit(z)
            q = _quality(z, model.labels_, sil, n_sil)
            rows.append({"algorithm": "kmeans", "k": k, "eps": np.nan, "inertia": model.inertia_, **q})
    if "dbscan" in spec.algorithms and len(z) > 2 * z.shape[1]:
        min_samples = spec.dbscan_min_samples or 2 * z.shape[1]
        eps = k_distance_eps(z, min_samples)
        model = CoreDBSCAN(eps, min_samples).fit(z)
        q = _quality(z, model.labels_, sil, n_sil)
        rows.append({"algorithm": "dbscan", "k": q["clusters"], "eps": eps, "inertia": np.nan, **q})
        rows[-1]["min_samples"] = min_samples
    return pd.DataFrame(rows)


def choose(table: pd.DataFrame, spec: SegmentSpec) -> tuple[pd.Series, str]:
    """k-means: the largest k whose silhouette is within silhouette_tolerance of the best k's,
    among those whose smallest segment holds min_segment_share (the module's rule). DBSCAN
    replaces it only with a cluster count in the k range, at most max_noise_share noise and a
    better silhouette on its non-noise points, and no cluster under min_segment_share. A
    candidate found unstable under resampling (`unstable`, set by fit_segmenter) is left out."""
    if "unstable" in table:
        table = table[~table["unstable"].fillna(False).astype(bool)]
    km = table[table["algorithm"] == "kmeans"].dropna(subset=["silhouette"])
    sized = km[km["smallest_share"] >= spec.min_segment_share]
    pool = sized if len(sized) else km  # every k has a tiny segment: the gate will say so
    best_km, text = None, ""
    if len(pool):
        top = pool.loc[pool["silhouette"].idxmax()]
        near = pool[pool["silhouette"] >= top["silhouette"] - spec.silhouette_tolerance]
        best_km = near.loc[near["k"].idxmax()]
        text = (
            f"k-means k={int(best_km['k'])}: the largest k with silhouette {best_km['silhouette']:.3f} "
            f"within {spec.silhouette_tolerance:g} of the best (k={int(top['k'])}, {top['silhouette']:.3f})"
        )
        if len(sized) < len(km):
            small = sorted(int(k) for k in set(km["k"]) - set(sized["k"]))
            text += f"; k={small} left out: a segment under {spec.min_segment_share:.0%} of customers"
    db = table[table["algorithm"] == "dbscan"]
    reason = ""
    if len(db):
        d = db.iloc[0]
        if not spec.k_min <= d["clusters"] <= spec.k_max:
            reason = f"DBSCAN (eps {d['eps']:.3g}) found {int(d['clusters'])} cluster(s), outside the k range"
        elif d["noise_share"] > spec.max_noise_share:
            reason = (
                f"DBSCAN (eps {d['eps']:.3g}) leaves {d['noise_share']:.0%} of customers as noise "
                f"(> {spec.max_noise_share:.0%})"
            )
        elif d["smallest_share"] < spec.min_segment_share:
            reason = (
                f"DBSCAN (eps {d['eps']:.3g}) has a cluster of {d['smallest_share']:.1%} of customers "
                f"(< {spec.min_segment_share:.0%})"
            )
        elif best_km is None or d["silhouette"] > best_km["silhouette"]:
            vs = "" if best_km is None else f" > k-means k={int(best_km['k'])} {best_km['silhouette']:.3f}"
            return d, f"DBSCAN silhouette {d['silhouette']:.3f} on non-noise points{vs}"
        else:
            reason = f"DBSCAN silhouette {d['silhouette']:.3f} on non-noise points is lower"
    if best_km is None:
        raise ValueError("no candidate segmentation: too few customers for the configured k range")
    return best_km, text + (f"; {reason}" if reason else "")


def _estimator(row: pd.Series, spec: SegmentSpec, seed: int | None = None):
    if row["algorithm"] == "kmeans":
        return kmeans(int(row["k"]), spec, seed)
    return CoreDBSCAN(float(row["eps"]), int(row["min_samples"]))


def stability(z: np.ndarray, labels: np.ndarray, row: pd.Series, spec: SegmentSpec) -> np.ndarray:
    """Adjusted Rand index between the chosen fit and refits on bootstrap resamples, both
    labelling the same (sample) points."""
    rng = np.random.default_rng(spec.seed + 1)
    scores = []
    for b in range(spec.resamples):
        idx = rng.integers(0, len(z), len(z))
        refit = _estimator(row, spec, seed=spec.seed + 1 + b).fit(z[idx])
        scores.append(adjusted_rand_score(labels, refit.predict(z)))
    return np.array(scores)


def _fit_chosen(table: pd.DataFrame, spec: SegmentSpec, z: np.ndarray, zs: np.ndarray):
    """The chosen setting fitted: k-means refitted on every customer, where a segment can come
    out smaller than on the sample; then that k leaves the choice (its measured smallest share
    written into the sweep) and the next choice is fitted, until one holds min_segment_share or
    none is left (the last is kept, and the no_tiny_segments gate stops it)."""
    while True:
        row, reason = choose(table, spec)
        if row["algorithm"] != "kmeans":  # DBSCAN does not scale to everyone: fitted on the sample
            model = _estimator(row, spec).fit(zs)
            return row, reason, model, model.predict(z)
        model = _estimator(row, spec).fit(z)
        smallest = np.bincount(model.labels_).min() / len(z)
        mine = (table["algorithm"] == "kmeans") & (table["k"] == row["k"])
        stable = ~table["unstable"].fillna(False).astype(bool) if "unstable" in table else True
        others = table[
            (table["algorithm"] == "kmeans")
            & ~mine
            & stable
            & (table["smallest_share"] >= spec.min_segment_share)
        ]
        if smallest >= spec.min_segment_share or others.empty:
            return row, reason, model, model.labels_
        table.loc[mine, "smallest_share"] = smallest


def _label(row: pd.Series) -> str:
    k = int(row["k"])
    return f"k-means k={k}" if row["algorithm"] == "kmeans" else f"DBSCAN ({k} clusters)"


def _stable_choice(table: pd.DataFrame, spec: SegmentSpec, z: np.ndarray, zs: np.ndarray, sample):
    """Bootstrap stability enters the choice: the chosen candidate is refitted on resamples, and
    one whose mean ARI is under min_stability_ari leaves the choice (its ARI written into the
    sweep) for the next, until one holds or none is left. Then the most stable one tried is
    kept, and the segments_stable_under_resampling gate stops it, saying so."""
    table["stability_ari"], table["unstable"] = np.nan, False
    tried = []
    while True:
        try:
            row, reason, model, labels = _fit_chosen(table, spec, z, zs)
        except ValueError:  # no candidate left
            if not tried:
                raise
            row, reason, model, labels, aris = max(tried, key=lambda t: t[4].mean())
            return row, reason + "; no candidate is stable under resampling", model, labels, aris
        aris = stability(zs, labels[sample], row, spec)
        mine = (table["algorithm"] == row["algorithm"]) & (table["k"] == row["k"])
        table.loc[mine, "stability_ari"] = float(aris.mean())
        tried.append((row, reason, model, labels, aris))
        if aris.mean() >= spec.min_stability_ari:
            break
        table.loc[mine, "unstable"] = True
    if len(tried) > 1:
        left = ", ".join(f"{_label(t[0])} (ARI {t[4].mean():.2f})" for t in tried[:-1])
        reason += f"; {left} left out: bootstrap ARI under {spec.min_stability_ari:g}"
    return row, reason, model, labels, aris


def fit_segmenter(features: pd.DataFrame, spec: SegmentSpec) -> Segmenter:
    """Fit preprocessing on the training customers, sweep, choose, refit, measure stability,
    name the segments."""
    start = time.perf_counter()
    missing = [c for c in spec.features if c not in features.columns]
    if missing:
        raise ValueError(f"segment.features names columns absent from customer_features: {missing}")
    x = features[list(spec.features)].to_numpy(dtype=float)
    prep = preprocessing(spec).fit(x)
    z = prep.transform(x)
    sample = _sample(len(z), spec)
    zs = z[sample]
    n_sil = min(len(zs), spec.silhouette_sample)
    sil = SilhouetteSample(zs[:n_sil])
    table = sweep(zs, spec, sil, n_sil)
    row, reason, model, labels, aris = _stable_choice(table, spec, z, zs, sample)
    members = member_scores(features)
    relabel, names = name_segments(features, labels, members)
    ids = relabelled(labels, relabel)
    numeric = [c for c in features.columns if c != ENTITY and pd.api.types.is_numeric_dtype(features[c])]
    profile = segment_profile(features, ids, names, numeric, members)
    metrics = _quality(zs, labels[sample], sil, n_sil)
    clustered = profile[profile["segment_id"] != NOISE]
    metrics |= {
        "stability_ari": float(aris.mean()),
        "stability_ari_min": float(aris.min()) if len(aris) else np.nan,
        "smallest_segment_share": float(clustered["share"].min()),
        "segments": len(clustered),
        "fit_seconds": time.perf_counter() - start,
    }
    table["chosen"] = (table["algorithm"] == row["algorithm"]) & (table["k"] == row["k"])
    table = table.drop(columns="unstable")
    params = {"algorithm": row["algorithm"], "k": int(row["k"])}
    if row["algorithm"] == "dbscan":
        params |= {"eps": float(row["eps"]), "min_samples": int(row["min_samples"])}
    else:
        params |= {"n_init": spec.n_init, "seed": spec.seed}
    return Segmenter(
        features=list(spec.features),
        pipeline=Pipeline([*prep.steps, ("cluster", model)]),
        relabel=relabel,
        names=names,
        algorithm=str(row["algorithm"]),
        params=params
        | {"sample_size": len(zs), "log_features": [spec.features[i] for i in prep[1].columns_]},
        metrics=metrics,
        sweep=table,
        profile=profile,
        reason=reason,
        trained_rows=len(features),
    )


def silhouette_on(segmenter: Segmenter, features: pd.DataFrame, spec: SegmentSpec) -> float:
    """Silhouette of a fitted segmenter's assignment of `features` in its own scaled space, on
    the customers a fit with `spec` would measure (so champion and challenger meet on the
    same customers)."""
    z = segmenter.pipeline[:-1].transform(features[segmenter.features].to_numpy(dtype=float))
    labels = segmenter.pipeline[-1].predict(z)
    points = _sample(len(z), spec)[: spec.silhouette_sample]
    return SilhouetteSample(z[points]).score(labels[points])


def _sample(n: int, spec: SegmentSpec) -> np.ndarray:
    """The customers the sweep, DBSCAN and bootstrap use, in random order (the silhouette
    takes the first silhouette_sample of them)."""
    return np.random.default_rng(spec.seed).permutation(n)[: spec.sample_size]
