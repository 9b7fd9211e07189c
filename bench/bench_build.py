"""What a build costs against what it reads (issue 14), each figure measured in this run:

floor      a fresh process that imports the stack (the code location: dagster, mlflow,
           pandas, scikit-learn, statsforecast, statsmodels) and reads the sample once
build      README command 1 on a copy of the shipped sample, in a fresh DAGSTER_HOME: the
           whole graph over the window's 24 monthly partitions, as a ratio to the floor
small      the same command on a small generated feed (--small-lines over three years):
           cost should follow lines, not days; the events the run wrote against the days
new day    one day's file arriving after the build: the new_data_sensor's request run as
           `dagster job execute` (refresh_and_monitor_job over the month that holds the day)

growth     (--growth) the build over generated feeds, one factor at a time in 10x steps:
           lines, window length, forecast series; seconds and events per feed

  python bench/bench_build.py [--skip-build] [--skip-small] [--skip-new-day] [--growth]
                              [--small-lines 400] [--logs DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FLOOR = """
import pandas as pd
import mlops_assets.definitions  # the code location (dagster, scipy, ...), first as in the build
import mlflow.sklearn, sklearn.ensemble, statsforecast.models, statsmodels.api  # what the build uses
pd.read_csv({path!r})
"""


LOGS: Path | None = None  # --logs: where each command's output is kept


OUTCOME: dict[str, str] = {}  # label -> "built" or what stopped it
BEFORE_RUN: dict[str, float] = {}  # label -> seconds from the command's start to its RUN_START
EVENT_SECONDS = 0.0  # one event written to a fresh SQLite instance (measured in main)


def timed(cmd: list[str], env: dict, cwd: Path, label: str) -> float:
    start, wall = time.perf_counter(), time.time()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    started = re.search(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \+0000 .* RUN_START ", done.stderr, re.M)
    if started:  # the log's clock has whole seconds
        BEFORE_RUN[label] = pd.Timestamp(started.group(1), tz="UTC").timestamp() - wall
    if LOGS is not None:
        LOGS.mkdir(parents=True, exist_ok=True)
        (LOGS / f"{label.replace(' ', '_')}.log").write_text(done.stdout + done.stderr)
    failed = sorted(set(re.findall(r"^(\w+): (\w+)$", done.stdout + done.stderr, re.M)))
    stopped = "blocked: " + ", ".join(f"{asset}.{check}" for asset, check in failed)
    OUTCOME[label] = "built" if done.returncode == 0 else stopped
    if done.returncode != 0:
        tail = "\n".join(done.stderr.splitlines()[-15:])
        print(f"{label}: exit code {done.returncode} after {seconds:.1f} s\n{tail}")
    return seconds


def environment(data: Path, home: Path) -> dict:
    home.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "MLOPS_DATA_DIR": str(data), "DAGSTER_HOME": str(home)}


def materialize(data: Path, home: Path, first: str, last: str, label: str) -> float:
    cmd = ["dagster", "asset", "materialize", "-m", "mlops_assets.definitions", "--select", "*",
           "--partition-range", f"{first}...{last}"]  # fmt: skip
    return timed(cmd, environment(data, home), ROOT, label)


def events(home: Path, last_only: bool = False) -> tuple[int, Counter]:
    """Events the runs (or the latest run) of this DAGSTER_HOME wrote (all kinds), and the
    count per kind."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(home)
    with dg.DagsterInstance.get() as instance:
        kinds: Counter = Counter()
        for run in instance.get_runs(limit=1 if last_only else None):
            for entry in instance.all_logs(run.run_id):
                if entry.dagster_event is not None:
                    kinds[entry.dagster_event.event_type_value] += 1
    return sum(kinds.values()), kinds


def event_cost(tmp: Path, n: int = 100) -> float:
    """Seconds Dagster takes to write one asset materialization event to a fresh SQLite
    instance (the default storage), in a separate process as a build does."""
    code = (
        "import time, dagster as dg\n"
        "with dg.DagsterInstance.get() as inst:\n"
        "    t = time.perf_counter()\n"
        f"    for i in range({n}):\n"
        "        inst.report_runless_asset_event(dg.AssetMaterialization('a', partition=str(i)))\n"
        f"    print((time.perf_counter() - t) / {n})\n"
    )
    home = tmp / "home_events"
    home.mkdir()
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "DAGSTER_HOME": str(home)},
                          capture_output=True, text=True, check=True)  # fmt: skip
    return float(done.stdout.strip().splitlines()[-1])


def breakdown(label: str, seconds: float, total_events: int) -> str:
    """Where a build's time went: before its run started, writing its events, the rest."""
    before = BEFORE_RUN.get(label, float("nan"))
    writing = total_events * EVENT_SECONDS
    return (
        f"  {label}: {before:.0f} s before the run started (CLI, code location import, run and "
        f"planned events), about {writing:.1f} s writing its {total_events} events "
        f"({EVENT_SECONDS * 1000:.0f} ms each), {seconds - before - writing:.0f} s the rest (steps' work)"
    )


def copy_sample(target: Path) -> Path:
    (target / "raw").mkdir(parents=True)
    for name in ("sources.yaml", "raw/transactions.csv.gz", "raw/products.csv", "raw/inventory.csv"):
        shutil.copy(ROOT / "data" / name, target / name)
    return target


def window(data: Path) -> tuple[pd.Timestamp, pd.Timestamp]:
    spec = yaml.safe_load((data / "sources.yaml").read_text())["window"]
    return pd.Timestamp(spec["start_date"]), pd.Timestamp(spec["end_date"])


def build(tmp: Path, floor: float) -> None:
    data = copy_sample(tmp / "sample")
    start, end = window(data)
    seconds = materialize(data, tmp / "home", start.strftime("%Y-%m"), end.strftime("%Y-%m"), "build")
    total, kinds = events(tmp / "home")
    days = (end - start).days + 1
    print(
        f"build: whole graph on the shipped sample (README command 1, fresh instance) {seconds:.1f} s "
        f"= {seconds / floor:.1f}x the floor; {total:,} events for {days} days in the window "
        f"({kinds['ASSET_MATERIALIZATION_PLANNED']} planned, {kinds['ASSET_MATERIALIZATION']} "
        f"materializations, {kinds['ASSET_CHECK_EVALUATION']} check evaluations)"
    )
    print(breakdown("build", seconds, total))


# a sparse feed's catalog: most of its 200 products sell nothing in a quarter, so their stock
# cover and return rate are undefined (null); its owner says so in sources.yaml
SPARSE = {"max_null_share": {"return_rate": 0.95, "inventory_ratio": 0.95, "days_of_cover": 0.95}}


def generate(data: Path, lines: int, start: str, end: str, forecast: dict | None = None) -> Path:
    """A generated feed (the sample generator) with the sparse-catalog null shares."""
    from mlops_assets.sample_data.__main__ import main as generate_cli

    generate_cli(["--lines", str(lines), "--seed", "5", "--out", str(data), "--start", start,
                  "--end", end])  # fmt: skip
    spec = yaml.safe_load((data / "sources.yaml").read_text())
    spec["features"] = {**spec.get("features", {}), **SPARSE}
    if forecast is not None:
        spec["forecast"] = forecast
    (data / "sources.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return data


def small(tmp: Path, floor: float, lines: int) -> None:
    weekly_total = {"freq": "W", "horizon": 8, "levels": ["total"]}  # a few orders a week
    data = generate(tmp / "small", lines, "2022-01-01", "2024-12-31", weekly_total)
    seconds = materialize(data, tmp / "home_small", "2022-01", "2024-12", "small feed")
    total, kinds = events(tmp / "home_small")
    print(
        f"small feed: {lines} lines over 1,096 days (2022-2024): {seconds:.1f} s = {seconds / floor:.1f}x "
        f"the floor; {total:,} events ({kinds['ASSET_MATERIALIZATION_PLANNED']} planned, "
        f"{kinds['ASSET_MATERIALIZATION']} materializations) for 1,096 days"
    )
    print(breakdown("small feed", seconds, total))


def counts(data: Path) -> dict:
    """Lines, customers and forecast series of a built data directory (from its warehouse)."""
    import duckdb

    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        one = lambda sql: con.execute(sql).fetchall()[0][0]  # noqa: E731
        return {
            "lines": one("select count(*) from bronze.bronze_transactions"),
            "customers": one("select count(distinct customer_id) from silver.silver_transactions"),
            "series": one("select count(distinct series_id) from forecasting.sales_series"),
        }


def growth(tmp: Path, floor: float) -> None:
    """The whole build over generated feeds, one factor at a time in 10x steps: lines over the
    sample's two years, then the window's length at 20,000 lines, then the forecast series."""
    variants = [  # label, lines, first day, last day, forecast levels (None: the sample's)
        ("lines 2k", 2_000, "2023-01-01", "2024-12-31", None),
        ("lines 20k", 20_000, "2023-01-01", "2024-12-31", None),
        ("lines 200k", 200_000, "2023-01-01", "2024-12-31", None),
        ("window 1 year", 20_000, "2024-01-01", "2024-12-31", None),
        ("window 10 years", 20_000, "2015-01-01", "2024-12-31", None),
        ("series 1 (total only)", 20_000, "2023-01-01", "2024-12-31", ["total"]),
    ]
    rows = []
    for i, (label, lines, first, last, levels) in enumerate(variants):
        forecast = None if levels is None else {"levels": levels}
        data = generate(tmp / f"growth{i}", lines, first, last, forecast)
        home = tmp / f"home_growth{i}"
        seconds = materialize(data, home, first[:7], last[:7], f"growth {label}")
        total, _ = events(home)
        days = (pd.Timestamp(last) - pd.Timestamp(first)).days + 1
        rows.append({"feed": label, **counts(data), "days": days, "events": total,
                     "seconds": round(seconds, 1), "x floor": round(seconds / floor, 1),
                     "outcome": OUTCOME[f"growth {label}"]})  # fmt: skip
    print("growth (each row one fresh build of a generated feed):")
    print(pd.DataFrame(rows).to_string(index=False))


def new_day(tmp: Path, floor: float) -> None:
    """The sample without its last day is built; then that day's file lands."""
    import dagster as dg

    data = copy_sample(tmp / "daily")
    spec = yaml.safe_load((data / "sources.yaml").read_text())
    spec["transactions"]["path"] = "raw/transactions*.csv.gz"
    (data / "sources.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    raw = pd.read_csv(data / "raw/transactions.csv.gz", dtype=str)
    start, end = window(data)
    last = raw["invoice_ts"].str[:10] == end.date().isoformat()
    raw[~last].to_csv(data / "raw/transactions.csv.gz", index=False)
    home = tmp / "home_daily"
    materialize(data, home, start.strftime("%Y-%m"), end.strftime("%Y-%m"), "build before the new day")
    time.sleep(1)
    raw[last].to_csv(data / f"raw/transactions_{end.date()}.csv.gz", index=False)

    os.environ["MLOPS_DATA_DIR"], os.environ["DAGSTER_HOME"] = str(data), str(home)
    from mlops_assets.definitions import build_definitions
    from mlops_assets.settings import load_settings

    defs = build_definitions(load_settings(data))
    with dg.DagsterInstance.get() as instance:
        sensor = defs.resolve_sensor_def("new_data_sensor")
        result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    (request,) = result.run_requests
    tags = {k: v for k, v in request.tags.items() if k.startswith("dagster/")}
    cmd = ["dagster", "job", "execute", "-m", "mlops_assets.definitions", "-j", "refresh_and_monitor_job",
           "--tags", json.dumps(tags)]  # fmt: skip
    seconds = timed(cmd, environment(data, home), ROOT, "new day")
    print(
        f"new day: {int(last.sum())} lines of {end.date()} in a new file -> new_data_sensor -> "
        f"refresh_and_monitor_job over {tags['dagster/asset_partition_range_start']}: {seconds:.1f} s "
        f"= {seconds / floor:.1f}x the floor"
    )
    print(breakdown("new day", seconds, events(home, last_only=True)[0]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small-lines", type=int, default=400)
    parser.add_argument("--skip-small", action="store_true")
    parser.add_argument("--skip-new-day", action="store_true")
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--growth", action="store_true", help="also the growth table (6 builds)")
    parser.add_argument("--logs", type=Path, help="keep each command's output (its step timings) here")
    args = parser.parse_args()
    global LOGS
    LOGS = args.logs
    code = FLOOR.format(path=str(ROOT / "data/raw/transactions.csv.gz"))
    floor = timed([sys.executable, "-c", code], dict(os.environ), ROOT, "floor")
    print(f"floor: a fresh process imports the stack and reads the sample once: {floor:.1f} s")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        global EVENT_SECONDS
        EVENT_SECONDS = event_cost(tmp)
        print(f"one Dagster event written to a fresh SQLite instance: {EVENT_SECONDS * 1000:.1f} ms")
        if not args.skip_build:
            build(tmp, floor)
        if not args.skip_small:
            small(tmp, floor, args.small_lines)
        if not args.skip_new_day:
            new_day(tmp, floor)
        if args.growth:
            growth(tmp, floor)


if __name__ == "__main__":
    main()
