"""Feature store speed, every figure against a baseline measured in the same run.

    python bench/bench_features.py [--lines 1000000] [--repeat 3] [--customers 100000]

1. customer features (without the CLV fit) over N generated order lines, against one minimal
   RFM pass: groupby(customer_id).agg(last order, order count, revenue) on the same frame;
   the CLV fit is timed on its own beside it.
2. online lookups: 10,000 single-id lookups from 100 threads over a table of --customers
   customers, latency percentiles and throughput, against a bare dict lookup run the same way.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_ingest import best_interleaved  # noqa: E402

from mlops_assets.assets.ingestion import _gates, read_and_audit  # noqa: E402
from mlops_assets.core import clv  # noqa: E402
from mlops_assets.core.customer_features import customer_features  # noqa: E402
from mlops_assets.core.feature_store import OnlineFeatureStore  # noqa: E402
from mlops_assets.sample_data.__main__ import main as generate_cli  # noqa: E402
from mlops_assets.settings import load_settings  # noqa: E402

THREADS, LOOKUPS = 100, 10_000


def minimal_rfm(df: pd.DataFrame) -> pd.DataFrame:
    return df.groupby("customer_id").agg(
        last_order=("order_ts", "max"), orders=("order_id", "nunique"), revenue=("amount", "sum")
    )


def load_lines(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    settings = load_settings(data_dir)
    _, products, _ = read_and_audit(settings, "products", _gates("bronze_products"))
    _, lines, _ = read_and_audit(settings, "transactions", _gates("bronze_transactions"))
    valid = lines["order_ts"].notna() & lines["amount"].notna() & lines["product_id"].notna()
    return lines[valid].reset_index(drop=True), products


def latencies(lookup, ids: list[str]) -> np.ndarray:
    """Seconds per call, each call timed inside its worker thread."""

    def one(i: str) -> float:
        t0 = time.perf_counter()
        lookup(i)
        return time.perf_counter() - t0

    with ThreadPoolExecutor(THREADS) as pool:
        return np.fromiter(pool.map(one, ids), dtype=float)


def online_bench(table: pd.DataFrame, customers: int) -> None:
    rng = np.random.default_rng(0)
    rows = table.iloc[rng.integers(0, len(table), customers)].reset_index(drop=True)
    rows["customer_id"] = pd.array([f"K{i:07d}" for i in range(customers)], dtype="string[pyarrow]")
    store = OnlineFeatureStore({"customer": rows})
    plain = {cid: tuple(r) for cid, r in zip(rows["customer_id"], rows.itertuples(index=False), strict=True)}
    ids = [f"K{i:07d}" for i in rng.integers(0, customers, LOOKUPS)]

    results = {}
    for name, lookup in [
        ("dict", plain.get),
        ("online store", lambda i: store.get_online_features([i], "customer")),
    ]:
        t0 = time.perf_counter()
        lat = latencies(lookup, ids)
        wall = time.perf_counter() - t0
        results[name] = (np.percentile(lat, [50, 95, 99]) * 1000, LOOKUPS / wall)
    print(f"online lookups: {LOOKUPS:,} from {THREADS} threads over {customers:,} customers")
    for name, ((p50, p95, p99), qps) in results.items():
        print(f"  {name:13s} p50={p50:.3f} ms  p95={p95:.3f} ms  p99={p99:.3f} ms  throughput={qps:,.0f}/s")
    ratio = results["online store"][0][1] / max(results["dict"][0][1], 1e-9)
    print(f"  online store p95 = {ratio:.0f}x the dict's p95 (target: under 10 ms)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--customers", type=int, default=100_000)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="bench_features_"))
    try:
        generate_cli(["--lines", str(args.lines), "--seed", "11", "--out", str(data_dir), "--no-compress"])
        lines, products = load_lines(data_dir)
        as_of = lines["order_ts"].max().floor("D") + pd.Timedelta(days=1)
        best = best_interleaved(
            {
                "rfm": lambda: minimal_rfm(lines),
                "features": lambda: customer_features(lines, as_of, products, with_clv=False),
            },
            args.repeat,
        )
        t0 = time.perf_counter()
        summary = clv.rfm_summary(lines, as_of)
        model = clv.fit_clv(summary)
        fit = time.perf_counter() - t0
        table = customer_features(lines, as_of, products, clv_model=model)
        print(f"lines={len(lines):,} customers={len(table):,}")
        print(f"minimal RFM groupby: {best['rfm']:.3f} s")
        print(
            f"customer features without CLV: {best['features']:.3f} s  "
            f"ratio={best['features'] / best['rfm']:.2f}x (target: at most 3x)"
        )
        print(f"CLV summary + BG/NBD + Gamma-Gamma fit: {fit:.3f} s  ratio={fit / best['rfm']:.2f}x")
        online_bench(table, args.customers)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
