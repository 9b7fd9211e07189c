"""Cluster quality measures used to choose and gate a segmenter: silhouette over one fixed
sample (its distances computed once and reused for every candidate labelling), the k-distance
knee that sets DBSCAN's eps, and bootstrap stability as a mean adjusted Rand index."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import pdist, squareform

NOISE = -1  # DBSCAN's label for points in no cluster


class SilhouetteSample:
    """Silhouette of many labellings of the same points.

    sklearn's `silhouette_score(sample_size=...)` recomputes the pairwise distances for every
    call; a k sweep scores ten labellings of one sample, so the distances are computed once
    here and each labelling costs one matrix product (tested equal to sklearn's value).
    """

    def __init__(self, x: np.ndarray):
        # computed in float64, kept as float32: half the memory each labelling's product
        # streams through, sums within 1e-5 of sklearn's (tested)
        self.distances = squareform(pdist(np.asarray(x, dtype=np.float64)).astype(np.float32))

    def score(self, labels: np.ndarray) -> float:
        """Mean silhouette over the points whose label is not NOISE; NaN for fewer than two
        clusters (the measure is undefined)."""
        labels = np.asarray(labels)
        keep = labels != NOISE
        d = self.distances if keep.all() else self.distances[np.ix_(keep, keep)]
        codes = np.unique(labels[keep], return_inverse=True)[1]
        sizes = np.bincount(codes)
        k = len(sizes)
        if k < 2 or k >= len(codes):
            return float("nan")
        onehot = np.zeros((len(codes), k), dtype=np.float32)
        onehot[np.arange(len(codes)), codes] = 1.0
        sums = (d @ onehot).astype(np.float64)  # distance from each point to each cluster's members
        own = sizes[codes]
        a = sums[np.arange(len(codes)), codes] / np.maximum(own - 1, 1)
        means = sums / sizes
        means[np.arange(len(codes)), codes] = np.inf
        b = means.min(axis=1)
        s = (b - a) / np.maximum(a, b)
        s[own == 1] = 0.0  # sklearn's convention for a point alone in its cluster
        return float(np.nan_to_num(s).mean())


def knee(values: np.ndarray) -> int:
    """Index of the knee of an increasing curve: the point farthest from the chord joining
    its ends once both axes are scaled to 0-1 (the "Kneedle" idea)."""
    y = np.sort(np.asarray(values, dtype=float))
    if len(y) < 3 or y[-1] == y[0]:
        return len(y) - 1
    x = np.linspace(0.0, 1.0, len(y))
    yn = (y - y[0]) / (y[-1] - y[0])
    return int(np.argmax(x - yn))  # convex curve: farthest below the chord


def k_distance_eps(x: np.ndarray, min_samples: int) -> float:
    """DBSCAN's eps from the k-distance graph: the distance to each point's min_samples-th
    neighbour (the point itself counted, as DBSCAN counts it), read at the knee."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=min_samples).fit(x)
    dist = nn.kneighbors(x, return_distance=True)[0][:, -1]
    dist = np.sort(dist)
    return float(dist[knee(dist)])
