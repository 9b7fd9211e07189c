"""Ingestion speed against a bare pandas.read_csv of the same file, measured in one run.

    python bench/bench_ingest.py [--lines 1000000] [--repeat 3] [--dagster]

Generates N order lines (plain CSV), then times:
  baseline  pandas.read_csv(file), nothing else
  pipeline  what the bronze and split assets do: read per sources.yaml, type, schema and null
            gates, partition attribution, quarantine rules, silver gate, data quality report,
            printed without and with the four DuckDB writes, and once more with the file
            unchanged since the round before (not read again: core/line_cache.py)
  dagster   (--dagster) the same as one in-process Dagster run over the window's 24 monthly
            partitions, which adds Dagster's per-partition event bookkeeping (planned and
            materialization events for every asset and month)
and prints each as a ratio to the baseline (best of --repeat interleaved rounds; these machines
are noisy).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlops_assets.assets import transactions  # noqa: E402
from mlops_assets.assets.ingestion import _gates, read_and_audit, tx_gates  # noqa: E402
from mlops_assets.assets.partitions import window_of  # noqa: E402
from mlops_assets.assets.quality import STAGED, TABLES  # noqa: E402
from mlops_assets.core import line_cache, warehouse  # noqa: E402
from mlops_assets.core.schemas import PARTITION_COLUMN  # noqa: E402
from mlops_assets.sample_data.__main__ import main as generate_cli  # noqa: E402
from mlops_assets.settings import load_settings  # noqa: E402


def best_interleaved(fns: dict, repeat: int) -> dict[str, float]:
    """Best time of each function over `repeat` rounds, every round running each once, so a
    noisy stretch of the machine hits baseline and pipeline alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: min(values) for name, values in times.items()}


def pipeline(data_dir: Path, write: bool = True, warm: bool = False) -> None:
    """What ingest_transactions computes (transactions.ingest: read a file at a time, type,
    every gate of bronze and silver, the quarantine rules a month at a time, the quality
    report), then the four warehouse writes from the stage. Cold: the cache of files already
    read is emptied first; warm: the file is unchanged since the last round, so it is not read."""
    if not warm:
        shutil.rmtree(data_dir / line_cache.FOLDER, ignore_errors=True)
    settings = load_settings(data_dir)
    window = window_of(settings)
    _, catalog, results = read_and_audit(settings, "products", _gates("bronze_products"))
    run = transactions.ingest(settings, window, window.bounds.start, window.bounds.end, catalog, tx_gates())
    try:
        assert run.publishes, [r.description for r in run.results if not r.passed]
        if not write:
            return
        db = data_dir / "bench.duckdb"
        db.unlink(missing_ok=True)
        for output, table in TABLES.items():
            warehouse.replace_range(
                db, table, run.stage.files(STAGED[output]), PARTITION_COLUMN, run.start, run.end
            )
    finally:
        run.close()


def dagster_run(data_dir: Path) -> None:
    """The ingestion assets only (bronze, silver, quality), as the pipeline figure measures."""
    from mlops_assets_tests.conftest import INGESTION, group_keys, run_graph

    (data_dir / "warehouse.duckdb").unlink(missing_ok=True)
    result = run_graph(data_dir, "2023-01-01", "2024-12-31", selection=group_keys(data_dir, *INGESTION))
    assert result.success


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dagster", action="store_true", help="also time a full Dagster run")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    try:
        generate_cli(["--lines", str(args.lines), "--seed", "11", "--out", str(data_dir), "--no-compress"])
        csv = data_dir / "raw/transactions.csv"
        size_mb = csv.stat().st_size / 1e6
        best = best_interleaved(
            {
                "baseline": lambda: pd.read_csv(csv),
                "compute": lambda: pipeline(data_dir, write=False),
                "work": lambda: pipeline(data_dir),
                "warm": lambda: pipeline(data_dir, warm=True),
            },
            args.repeat,
        )
        baseline, compute, work, warm = best["baseline"], best["compute"], best["work"], best["warm"]
        print(f"lines={args.lines:,} file={size_mb:.0f} MB")
        print(f"baseline pandas.read_csv: {baseline:.2f} s")
        print(f"pipeline without warehouse writes: {compute:.2f} s  ratio={compute / baseline:.2f}x")
        print(
            f"pipeline (bronze+silver+quarantine+checks+writes): {work:.2f} s  ratio={work / baseline:.2f}x"
        )
        print(f"the same, the file unchanged (not read again): {warm:.2f} s  ratio={warm / baseline:.2f}x")
        if args.dagster:
            run = best_interleaved({"run": lambda: dagster_run(data_dir)}, 1)["run"]
            print(f"dagster run, 24 monthly partitions: {run:.2f} s  ratio={run / baseline:.2f}x")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
