"""Segmenter speed: the whole selection (k-means sweep over k_min..k_max, DBSCAN with its
k-distance eps, bootstrap stability, the final refit and the segment names) against one k-means
fit at the chosen k on the same preprocessed customers, measured in the same run.

    python bench/bench_segment.py [--customers 100000] [--repeat 3]

Customers are generated directly as a feature table (recency, frequency, monetary, tenure...),
a mix of lapsed, occasional, regular, new and high-value customers with lognormal spend.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_ingest import best_interleaved  # noqa: E402

from mlops_assets.core.segmentation import SegmentSpec, fit_segmenter, kmeans, preprocessing  # noqa: E402

# (share, mean recency days, mean orders per year, mean order value, mean tenure days)
TYPES = {
    "lapsed": (0.35, 500, 0.0, 90, 600),
    "occasional": (0.25, 150, 2.0, 80, 400),
    "regular": (0.20, 40, 8.0, 110, 500),
    "new": (0.12, 20, 1.5, 100, 40),
    "high_value": (0.08, 10, 25.0, 250, 650),
}


def customers(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    kinds = rng.choice(len(TYPES), size=n, p=[t[0] for t in TYPES.values()])
    params = np.array([t[1:] for t in TYPES.values()])[kinds]
    tenure = np.clip(rng.gamma(4.0, params[:, 3] / 4.0), 1, 730)
    recency = np.minimum(rng.gamma(2.0, params[:, 0] / 2.0), tenure)
    frequency = rng.poisson(params[:, 1])
    aov = rng.lognormal(np.log(params[:, 2]), 0.5)
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:07d}" for i in range(n)],
            "recency_days": recency,
            "frequency": frequency,
            "monetary": frequency * aov,
            "avg_order_value": aov,
            "tenure_days": tenure,
        }
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    spec = SegmentSpec()
    table = customers(args.customers)
    t0 = time.perf_counter()
    segmenter = fit_segmenter(table, spec)
    first = time.perf_counter() - t0
    print(f"{args.customers:,} customers, features {list(spec.features)}; first fit {first:.2f} s")
    print(f"chosen: {segmenter.reason}")
    print(segmenter.profile[["segment_id", "segment_name", "customers", "share", "revenue_share"]].round(3))
    k = segmenter.params["k"]
    z = preprocessing(spec).fit_transform(table[list(spec.features)].to_numpy(dtype=float))
    times = best_interleaved(
        {
            "one_kmeans": lambda: kmeans(k, spec).fit(z),
            "whole_selection": lambda: fit_segmenter(table, spec),
        },
        args.repeat,
    )
    print(f"one k-means fit at k={k} (n_init={spec.n_init}): {times['one_kmeans']:.3f} s")
    print(
        f"whole selection (k {spec.k_min}-{spec.k_max} sweep on {min(args.customers, spec.sample_size):,}, "
        f"DBSCAN, {spec.resamples} bootstrap refits, final refit on all): {times['whole_selection']:.3f} s"
    )
    ratio = times["whole_selection"] / times["one_kmeans"]
    print(f"ratio: {ratio:.2f}x one k-means fit (target <= 12x)")
    m = segmenter.metrics
    print(f"silhouette {m['silhouette']:.3f}, stability ARI {m['stability_ari']:.3f}")


if __name__ == "__main__":
    main()
