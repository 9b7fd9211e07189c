"""Catalog-scale forecasting (issue 17): every product in every store of the sample generator
scaled up (2,000 products x 5 stores = 10,000 product-store daily series of two years, with the
product, store, category and total series above them: 12,014), backtested over 4 folds of 28
days, a model chosen per series, reconciled and forecast 28 days ahead.

Prints the time, series per second, the ratio to one seasonal naive pass over the same series
(statsforecast fitting and forecasting SeasonalNaive alone, measured in the same run), peak
memory, and the holdout accuracy per level (geometric-mean MASE relative to seasonal naive on
the last fold, which no choice saw) with the 80% / 95% band coverage.

    python bench/bench_catalog.py            # 2,000 products, 2,000,000 order lines
    python bench/bench_catalog.py 200 200000 # the shipped sample's size
    python bench/bench_catalog.py 2000 2000000 11  # another catalog (seed 11; 7 by default)
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

GENERATE = """
import sys
import pandas as pd
from mlops_assets.sample_data.generator import generate
d = generate(lines=int(sys.argv[2]), n_products=int(sys.argv[1]), seed=int(sys.argv[4]))
t = d.transactions
t["period"] = pd.to_datetime(t["invoice_ts"], errors="coerce").dt.floor("D")
t["revenue"] = pd.to_numeric(t["qty"], errors="coerce") * pd.to_numeric(t["unit_price"], errors="coerce")
t = t.dropna(subset=["period", "revenue"]).merge(d.products[["sku", "category"]], on="sku")
t = t[t["revenue"].abs() < 1e5]  # the generator's corrupted prices: quarantined in a real build
g = t.groupby(["sku", "store", "category", "period"], as_index=False)["revenue"].sum()
g.rename(columns={"sku": "product_id", "store": "store_id"}).to_parquet(sys.argv[3])
"""


def peak_mb() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def main(products: int = 2000, lines: int = 2_000_000, seed: int = 7) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bottom.parquet"
        started = time.perf_counter()
        args = [str(products), str(lines), str(path), str(seed)]
        subprocess.run([sys.executable, "-c", GENERATE, *args], check=True)
        print(
            f"generated {lines:,} lines of {products:,} products (seed {seed}) "
            f"in {time.perf_counter() - started:.0f} s"
        )
        bottom = pd.read_parquet(path)
    from statsforecast import StatsForecast
    from statsforecast.models import SeasonalNaive

    from mlops_assets.core import catalog, reconciliation
    from mlops_assets.core.catalog_median import median_forecasts
    from mlops_assets.core.hierarchy import Hierarchy

    periods = pd.date_range("2023-01-01", "2024-12-31", freq="D")
    plan = catalog.CatalogPlan()

    started = time.perf_counter()
    h = Hierarchy.build(bottom, periods)
    built = time.perf_counter() - started
    frame = h.long()

    started = time.perf_counter()  # the baseline: one seasonal naive fit-and-forecast pass
    StatsForecast(models=[SeasonalNaive(plan.season)], freq="D", n_jobs=plan.workers).forecast(
        df=frame, h=plan.horizon
    )
    naive = time.perf_counter() - started
    del frame

    started = time.perf_counter()
    base = catalog.backtest_rows(h, np.arange(len(h.ids)), plan)
    backtested = time.perf_counter() - started
    median = median_forecasts(h, plan)  # its own step in the graph, beside the chunks
    result = reconciliation.reconcile(h, base, plan, median)
    total = time.perf_counter() - started
    own, children = peak_mb()

    n = len(h.ids)
    print(f"series: {n:,} ({(h.levels == 'product_store').sum():,} product-store), {len(periods)} days each")
    print(f"hierarchy built in {built:.1f} s; seasonal naive pass {naive:.1f} s")
    print(
        f"backtest + choice {backtested:.1f} s, median model (3 fits) {median.seconds:.1f} s, "
        f"reconcile + bands {total - backtested - median.seconds:.1f} s: "
        f"{total:.1f} s in all = {n / total:.0f} series/s, {total / naive:.1f}x the seasonal naive pass"
    )
    print(f"peak memory: {own:,.0f} MB in this process, {children:,.0f} MB in the largest worker")
    print(f"reconciliation chosen on the selection folds: {result.method}")
    print(result.reconciliation.round(3).to_string(index=False))
    for level in dict.fromkeys(h.levels):
        figure = result.metrics[f"geomean_relative_mase_{level}"]
        rmse = result.metrics[f"geomean_relative_rmse_{level}"]
        print(f"  {level:>13}: holdout geomean MASE / seasonal naive {figure:.3f} (RMSE / its: {rmse:.3f})")
    point = result.metrics["geomean_relative_mase_point_product_store"]
    print(f"  product-store point forecast (mean or median by class): MASE / naive {point:.3f}")
    print("  " + "\n  ".join(result.notes))
    print(f"  coverage 80% {result.metrics['coverage80']:.1%}, 95% {result.metrics['coverage95']:.1%}")
    print(f"  models chosen: {result.choices['chosen_model'].value_counts().to_dict()}")
    score(h, bottom, result, naive)


def score(h, bottom: pd.DataFrame, result, naive: float) -> None:
    """Monitoring at catalog scale: the reconciled holdout forecasts, as if issued at the last
    fold's origin with the shipped bands' widths, scored on their actuals by the code
    catalog_forecast_performance runs (core/forecast_performance.py), every series."""
    from mlops_assets.assets.catalog_monitoring import actuals_of
    from mlops_assets.core import forecast_performance as fp

    bands = ["mean", "lower80", "upper80", "lower95", "upper95"]
    width = result.forecasts.groupby("series_id")[bands].first()
    held = result.holdout.copy()
    half80, half95 = (width["upper80"] - width["mean"]), (width["upper95"] - width["mean"])
    held["lower80"] = (held["mean"] - held["series_id"].map(half80)).clip(lower=0)
    held["upper80"] = held["mean"] + held["series_id"].map(half80)
    held["lower95"] = (held["mean"] - held["series_id"].map(half95)).clip(lower=0)
    held["upper95"] = held["mean"] + held["series_id"].map(half95)
    held["step"] = held.groupby("series_id").cumcount() + 1
    held["model"] = held["series_id"].map(result.choices.set_index("series_id")["chosen_model"])
    origin = held["period"].min() - pd.Timedelta(days=1)
    expected = {sid: {"mase": 1.0} for sid in h.ids}
    archive = fp.issued(held, origin, "1", expected)
    started = time.perf_counter()
    actuals = actuals_of(bottom, "D", archive)
    table = fp.score(archive, actuals, 7, 28, 0.25)
    took = time.perf_counter() - started
    print(
        f"scoring {len(table):,} series x 28 days of actuals (catalog_forecast_performance): {took:.1f} s, "
        f"{took / naive:.1f}x the seasonal naive pass; rolling MASE mean {table['mase'].mean():.3f}, "
        f"coverage 80% {table['coverage80'].mean():.1%}, 95% {table['coverage95'].mean():.1%}"
    )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
