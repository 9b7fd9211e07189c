"""Forecasting cost, against baselines measured in the same run.

    python bench/bench_forecast.py [--series 100] [--days 730] [--horizon 28]

Generates N daily series of two years (the sample generator's demand calendar: weekly and
yearly seasonality, holidays, a trend, at different scales and noise levels), then prints:
  per-series ratio  the full backtest and selection of one series (all default candidates,
                    4 folds with the holdout, conformal calibration, refit, forecast) against
                    one Prophet fit of the same series
  worker ratio      all N series with 1 worker against 2 workers (the target is >= 1.7x)
and, for information, the geometric mean of the chosen models' holdout MASE relative to seasonal
naive.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlops_assets.core import forecasting  # noqa: E402
from mlops_assets.core.forecast_models import ProphetModel  # noqa: E402
from mlops_assets.sample_data.calendar import demand_multiplier  # noqa: E402


def generated_series(n: int, days: int, seed: int = 5) -> dict[str, pd.Series]:
    rng = np.random.default_rng(seed)
    index = pd.date_range("2023-01-01", periods=days, freq="D")
    base = demand_multiplier(index)
    out = {}
    for i in range(n):
        scale = rng.lognormal(7, 1)  # stores and categories of very different sizes
        noise = rng.uniform(0.05, 0.3)
        y = scale * base * rng.lognormal(0, noise, days)
        out[f"series_{i:03d}"] = pd.Series(y, index=index)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--horizon", type=int, default=28)
    args = parser.parse_args()

    series = generated_series(args.series, args.days)
    plan = forecasting.ForecastPlan(horizon=args.horizon)
    forecasting.single_threaded()  # this process measures like a worker: one BLAS thread
    probe = list(series)[: min(5, len(series))]
    prophet, full = [], []
    for sid in probe:  # interleaved: a noisy stretch of the machine hits both alike
        t0 = time.perf_counter()
        ProphetModel("D").fit(series[sid])
        prophet.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        forecasting.forecast_series(sid, series[sid], plan)
        full.append(time.perf_counter() - t0)
    p, f = float(np.median(prophet)), float(np.median(full))
    print(f"series={args.series} days={args.days} horizon={args.horizon}")
    print(f"one Prophet fit: {p:.2f} s (median of {len(probe)})")
    print(
        f"backtest + selection + refit + forecast of one series: {f:.2f} s  "
        f"ratio={f / p:.1f}x (target <= 25x)"
    )

    t0 = time.perf_counter()
    one = forecasting.forecast_all(series, plan, workers=1)
    t1 = time.perf_counter()
    forecasting.forecast_all(series, plan, workers=2)
    t2 = time.perf_counter()
    serial, parallel = t1 - t0, t2 - t1
    print(f"{args.series} series, 1 worker: {serial:.1f} s; 2 workers: {parallel:.1f} s  "
          f"speed-up={serial / parallel:.2f}x (target >= 1.7x)")  # fmt: skip
    relative = forecasting.choice_table(one)["relative_mase"]
    print(f"geometric mean holdout relative MASE of the chosen models: {np.exp(np.log(relative).mean()):.3f}")
    print("chosen:", forecasting.choice_table(one)["chosen_model"].value_counts().to_dict())


if __name__ == "__main__":
    main()
