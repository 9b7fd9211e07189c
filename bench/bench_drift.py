"""Drift report speed against the floor of exact tests: sorting every numeric column's
reference and current values once, measured in the same run.

    python bench/bench_drift.py [--rows 1000000] [--repeat 3]

Reference and current have --rows rows each (20 numeric, 5 categorical columns; ten numeric
and two categorical columns shifted in the current). Printed: the report from scratch
(reference prepared in the same call), the report against a prepared `Reference` (what a
monitoring run does), and the same with a current window 10% shorter than the reference (the
unequal-size path of the Wasserstein distance). If Evidently is installed, its DataDriftPreset
on the same data is timed too (not a project dependency).
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

from mlops_assets.core.drift import Reference, drift_report  # noqa: E402

NUMERIC, CATEGORICAL = 20, 5


def frame(rows: int, seed: int, shifted: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols = {}
    for k in range(NUMERIC):
        shift = 0.5 if shifted and k < NUMERIC // 2 else 0.0
        cols[f"x{k}"] = rng.lognormal(0, 0.5, rows) * (1 + shift) if k % 2 else rng.normal(shift, 1, rows)
    for k in range(CATEGORICAL):
        p = np.array([0.4, 0.3, 0.2, 0.1])
        if shifted and k < 2:
            p = p[::-1]
        cols[f"c{k}"] = pd.Categorical(rng.choice(["a", "b", "c", "d"], size=rows, p=p))
    return pd.DataFrame(cols)


def sort_floor(reference: pd.DataFrame, current: pd.DataFrame) -> None:
    for k in range(NUMERIC):
        np.sort(reference[f"x{k}"].to_numpy())
        np.sort(current[f"x{k}"].to_numpy())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    reference, current = frame(args.rows, 0, False), frame(args.rows, 1, True)
    shorter = current.iloc[: int(args.rows * 0.9)]
    prepared = Reference.of(reference)
    report = drift_report(prepared, current)
    print(report[["column", "method", "statistic", "psi", "drifted"]].round(4).to_string(index=False))
    times = best_interleaved(
        {
            "floor": lambda: sort_floor(reference, current),
            "from_scratch": lambda: drift_report(reference, current),
            "prepared": lambda: drift_report(prepared, current),
            "prepared_unequal": lambda: drift_report(prepared, shorter),
        },
        args.repeat,
    )
    floor = times["floor"]
    shape = f"{args.rows:,} rows x ({NUMERIC} numeric + {CATEGORICAL} categorical) columns"
    print(f"\n{shape}, best of {args.repeat}")
    print(f"floor (sort {NUMERIC} numeric columns, reference and current): {floor:.3f} s")
    for name in ("from_scratch", "prepared", "prepared_unequal"):
        print(f"report {name.replace('_', ' ')}: {times[name]:.3f} s = {times[name] / floor:.2f}x the floor")
    print("target: from scratch at most 3x")
    try:
        from evidently import Report
        from evidently.presets import DataDriftPreset
    except ImportError:
        print("Evidently is not installed: no comparison")
        return
    t0 = time.perf_counter()
    Report([DataDriftPreset()]).run(current, reference)
    evidently = time.perf_counter() - t0
    print(
        f"Evidently DataDriftPreset: {evidently:.3f} s = {evidently / times['from_scratch']:.2f}x this report"
    )


if __name__ == "__main__":
    main()
