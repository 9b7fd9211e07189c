"""Real data the project never tuned on (mlops_assets_tests/fixtures, see the README there):
out-of-sample forecast accuracy and interval coverage on 20 real series from each of the last
three forecast origins, anomaly recall on 9
real daily series with injected spikes and drops, and the segmentation of CDNOW's 23,570
customers. Accuracy is printed as a ratio to seasonal naive on the same held-back periods, and
the combination rule beside the per-series "best" rule, both measured in this run.

    python bench/bench_realdata.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlops_assets.core.anomalies import AnomalySpec, detect  # noqa: E402
from mlops_assets.core.customer_features import customer_features  # noqa: E402
from mlops_assets.core.segmentation import SegmentSpec, fit_segmenter  # noqa: E402
from mlops_assets_tests.realdata import (  # noqa: E402
    cdnow_lines,
    daily_revenue_series,
    geomean,
    inject_anomalies,
    injection_scores,
    out_of_sample,
    series_frame,
)

ORIGINS = 3  # forecast origins per series: the last three horizons, each from what came before


def forecasting() -> None:
    for rule in ("combination", "best"):
        start = time.perf_counter()
        scored = out_of_sample({"choice": rule}, origins=ORIGINS)
        seconds = time.perf_counter() - start
        if rule == "combination":
            print(scored[scored["origin"] == 0].drop(columns="origin").round(3).to_string(index=False))
        for origin, part in scored.groupby("origin"):
            print(
                f"forecast.choice={rule}, origin {origin} (held back {origin} horizons before the last one): "
                f"geometric-mean relative MASE {geomean(part['relative_mase']):.3f} over {len(part)} series"
            )
        within80 = (abs(scored["coverage80"] - 0.80) <= 0.20).mean()
        within95 = (abs(scored["coverage95"] - 0.95) <= 0.20).mean()
        print(
            f"forecast.choice={rule}, all {ORIGINS} origins: geometric-mean MASE relative to seasonal naive "
            f"{geomean(scored['relative_mase']):.3f} over {len(scored)} series-origins; coverage 80% band "
            f"{scored['coverage80'].mean():.1%} (within 20 points on {within80:.0%}), 95% band "
            f"{scored['coverage95'].mean():.1%} ({within95:.0%}); {seconds:.0f} s"
        )


def anomalies() -> None:
    series = {s.name: s.y for s in daily_revenue_series()}
    _, clean = detect(series_frame(series), AnomalySpec())
    own = {sid: set(g.loc[g["is_anomaly"], "period"]) for sid, g in clean.groupby("series_id")}
    print(f"clean series: {clean['is_anomaly'].mean():.2%} of days flagged as they are (real events)")
    for share in (0.005, 0.01, 0.02, 0.03):
        injected, truth = inject_anomalies(series, own, share)
        _, scored = detect(series_frame(injected), AnomalySpec())
        r = injection_scores(scored, truth, own)
        print(
            f"anomalies as {share:.1%} of days: recall {r['recall']:.1%} of {r['injected']} injected "
            f"(x3, x0.2); other days newly flagged {r['false_share']:.2%}"
        )


def segmentation() -> None:
    lines = cdnow_lines()
    features = customer_features(lines, as_of=lines["order_ts"].max() + pd.Timedelta(days=1))
    start = time.perf_counter()
    segmenter = fit_segmenter(features, SegmentSpec())
    seconds = time.perf_counter() - start
    m = segmenter.metrics
    rfm = np.log1p(features[["recency_days", "frequency", "monetary"]].to_numpy(dtype=float))
    z = StandardScaler().fit_transform(rfm)
    standardized = silhouette_score(z, segmenter.segment_ids(features), sample_size=5000, random_state=0)
    print(segmenter.reason)
    print(
        segmenter.profile[
            [
                "segment_id",
                "segment_name",
                "customers",
                "share",
                "revenue_share",
                "R_score",
                "F_score",
                "M_score",
            ]
        ]
        .round(3)
        .to_string(index=False)  # fmt: skip
    )
    print(
        f"CDNOW segments: {m['segments']}, smallest {m['smallest_segment_share']:.1%}, silhouette "
        f"{m['silhouette']:.3f} (in a standardized log-RFM space {standardized:.3f}), bootstrap ARI "
        f"{m['stability_ari']:.3f}; fit {seconds:.1f} s"
    )


if __name__ == "__main__":
    forecasting()
    anomalies()
    segmentation()
