"""What a chain-sized order log costs to build (issue 30), each figure measured in this run:

generate   the project's generator writes each size once (customer shards, bounded memory) into
           --root/lines-N and reuses it on later runs
floor      DuckDB reading the same raw files and grouping them per customer and per day (the
           least any build of these lines must do), in this process
build      README command 1 over the size (MLOPS_DATA_DIR = a fresh build folder whose raw/ links
           to the generated files, a fresh DAGSTER_HOME): wall time, its ratio to the floor, the
           peak of the summed resident memory of every process of the run (sampled every 0.2 s),
           and the seconds per million lines of each step that works over lines

daily      the daily path after the build (issue 30: a new day costs its own size): the window
           grows by one day, a file with that day's lines arrives (the build's last day's lines,
           a day later, new order ids), and refresh_and_monitor_job runs for the new day's
           partition as daily_monitoring_schedule launches it: its wall time beside the build's

A build is stopped when its summed memory passes --kill-gib (the machine would otherwise kill
the session) or after --timeout-min; the table says so.

  python bench/bench_scale.py [--sizes 2M,8M,20M,50M] [--root DIR] [--kill-gib 20] [--timeout-min 60]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import yaml

BIN = str(Path(sys.executable).parent)  # the dagster CLI of this interpreter, venv activated or not
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = Path(os.environ.get("MLOPS_SCALE_DIR", Path.home() / ".cache" / "mlops_assets" / "scale"))
GIB = 1024**3
# the steps whose work follows the order lines (ARCHITECTURE.md "Line-level vs entity-level work")
LINE_STEPS = (
    "ingest_transactions",
    "customer_features",
    "product_features",
    "customer_feature_snapshots",
    "product_feature_snapshots",
    "clv_validation_report",
    "sales_series",
    "catalog_series",
    "feature_drift_report",
)


def size_of(text: str) -> int:
    text = text.strip().upper()
    factor = {"K": 1_000, "M": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("KM")) * factor)


def generated(root: Path, lines: int) -> Path:
    data = root / f"lines-{lines}"
    if not (data / "sources.yaml").exists():
        print(f"generating {lines:,} lines into {data} ...", flush=True)
        cmd = [sys.executable, "-m", "mlops_assets.sample_data", "--lines", str(lines), "--seed", "7",
               "--out", str(data)]  # fmt: skip
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return data


def floor(data: Path) -> float:
    """Seconds DuckDB takes to read the raw transaction files and group them per customer and
    per day: the lower bound of any build over these lines."""
    import duckdb

    spec = yaml.safe_load((data / "sources.yaml").read_text())["transactions"]
    cols = spec["columns"]
    path = str(data / spec["path"])
    start = time.perf_counter()
    with duckdb.connect() as con:
        con.execute(
            f"create temp view lines as select * from read_csv('{path}', header = true, all_varchar = true)"
        )
        con.execute(
            f"select {cols['customer_id']}, count(*), sum(try_cast({cols['quantity']} as double)) "
            f"from lines group by 1"
        ).fetchall()
        con.execute(
            f"select cast(try_cast({cols['order_ts']} as timestamp) as date), count(*) from lines group by 1"
        ).fetchall()
    return time.perf_counter() - start


def build_folder(data: Path, root: Path) -> Path:
    """A fresh folder that builds `data`'s raw files: its own outputs, the generated inputs
    linked one by one (a file added to it later is the build's alone)."""
    target = root / f"build-{data.name}"
    shutil.rmtree(target, ignore_errors=True)
    (target / "raw").mkdir(parents=True)
    spec = yaml.safe_load((data / "sources.yaml").read_text())
    spec["transactions"]["path"] = "raw/transactions*.csv.gz"  # the one file, or the shards
    (target / "sources.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    for path in (data / "raw").iterdir():
        (target / "raw" / path.name).symlink_to(path)
    return target


def new_day(data: Path) -> str:
    """Add the day after the window's last to the build folder: the window grows by a day and
    a file brings that day's lines (the last day's silver lines, a day later, with new order
    ids, in the source's own columns). Returns the new day's partition key."""
    import duckdb

    spec = yaml.safe_load((data / "sources.yaml").read_text())
    last = pd.Timestamp(spec["window"]["end_date"])
    spec["window"]["end_date"] = str((last + pd.Timedelta(days=1)).date())
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        lines = con.execute(
            "select * from silver.silver_transactions where partition_date = ?", [last.to_pydatetime()]
        ).df()
    lines["order_ts"] = lines["order_ts"] + pd.Timedelta(days=1)
    lines["order_id"] = "NEW-" + lines["order_id"].astype(str)
    lines["order_ts"] = lines["order_ts"].dt.strftime("%Y-%m-%d %H:%M:%S")
    columns = spec["transactions"]["columns"]
    raw = lines[list(columns)].rename(columns=columns)
    raw.to_csv(data / "raw" / "transactions-zz-new-day.csv.gz", index=False)
    (data / "sources.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return (last + pd.Timedelta(days=1)).strftime("%Y-%m")


def run_env(data: Path, home: Path) -> dict[str, str]:
    """The environment of a CLI run over `data`: this interpreter's dagster first on the PATH."""
    path = BIN + os.pathsep + os.environ.get("PATH", "")
    return {**os.environ, "PATH": path, "MLOPS_DATA_DIR": str(data), "DAGSTER_HOME": str(home)}


def run_daily(data: Path, home: Path, log: Path) -> dict:
    """refresh_and_monitor_job for the new day's partition, as the daily schedule runs it."""
    key = new_day(data)
    env = run_env(data, home)
    cmd = ["dagster", "job", "execute", "-m", "mlops_assets.definitions", "-j", "refresh_and_monitor_job",
           "--tags", json.dumps({"dagster/partition": key})]  # fmt: skip
    start = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.run(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT).returncode
    return {"seconds": time.perf_counter() - start, "outcome": "ran" if code == 0 else f"exit code {code}",
            "steps": {k: e - s for k, (s, e) in step_spans(home).items()}}  # fmt: skip


class PeakMemory(threading.Thread):
    """The peak over time of the summed resident memory of a process and all its descendants."""

    def __init__(self, pid: int, kill_at: float):
        super().__init__(daemon=True)
        self.root, self.kill_at, self.peak, self.killed = psutil.Process(pid), kill_at, 0, False
        self.samples: list[tuple[float, int]] = []  # (epoch seconds, summed bytes)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total = 0
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
            self.peak = max(self.peak, total)
            self.samples.append((time.time(), total))
            if total > self.kill_at:
                self.killed = True
                for p in procs:
                    try:
                        p.kill()
                    except psutil.NoSuchProcess:
                        continue
                return
            time.sleep(0.2)


def run_build(data: Path, home: Path, kill_gib: float, timeout_min: float, log: Path) -> dict:
    spec = yaml.safe_load((data / "sources.yaml").read_text())["window"]
    first, last = (str(spec[k])[:7] for k in ("start_date", "end_date"))
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    shutil.copy(ROOT / ".dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = run_env(data, home)
    # README command 1 (mlops-build runs `dagster asset materialize`, then reads the run back)
    cmd = [str(Path(BIN) / "mlops-build"), "--partition-range", f"{first}...{last}"]
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        watch = PeakMemory(proc.pid, kill_gib * GIB)
        watch.start()
        try:
            code = proc.wait(timeout=timeout_min * 60)
            outcome = "built" if code == 0 else f"exit code {code}"
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            outcome = f"stopped after {timeout_min:.0f} min"
        watch.done.set()
        watch.join()
    if watch.killed:
        outcome = f"stopped above {kill_gib:.0f} GiB"
    steps = step_spans(home)
    peaks = {k: max((b for t, b in watch.samples if s <= t <= e), default=0) for k, (s, e) in steps.items()}
    return {"seconds": time.perf_counter() - start, "peak": watch.peak, "outcome": outcome,
            "steps": {k: e - s for k, (s, e) in steps.items()}, "step_peaks": peaks}  # fmt: skip


def step_spans(home: Path) -> dict[str, tuple[float, float]]:
    """Each step's (start, end) in epoch seconds, from the run's events in the instance."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(home)
    began, took = {}, {}
    with dg.DagsterInstance.get() as instance:
        for run in instance.get_runs(limit=1):
            for entry in instance.all_logs(run.run_id):
                event = entry.dagster_event
                if event is None or event.step_key is None:
                    continue
                kind = event.event_type_value
                if kind == "STEP_START":
                    began[event.step_key] = entry.timestamp
                elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in began:
                    took[event.step_key] = (began[event.step_key], entry.timestamp)
    return took


def report(lines: int, floor_s: float, result: dict) -> None:
    millions = lines / 1e6
    print(
        f"\n{lines:,} lines: {result['outcome']} in {result['seconds']:.0f} s = "
        f"{result['seconds'] / floor_s:.1f}x the floor ({floor_s:.1f} s: DuckDB reading the files and "
        f"grouping per customer and per day); peak summed memory {result['peak'] / GIB:.2f} GiB"
    )
    steps = result["steps"]
    for step in sorted(steps, key=steps.get, reverse=True):
        if step.split("[")[0] in LINE_STEPS or steps[step] > 0.1 * result["seconds"]:
            line_level = "line-level" if step.split("[")[0] in LINE_STEPS else "entity-level"
            per, peak = steps[step] / millions, result["step_peaks"].get(step, 0) / GIB
            figures = f"{steps[step]:8.1f} s  {per:7.1f} s per M lines  peak {peak:5.2f} GiB"
            print(f"  {step:40s} {figures}  ({line_level})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="2M,8M,20M,50M")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="generated logs and build folders")
    parser.add_argument("--kill-gib", type=float, default=20.0, help="stop a build above this summed memory")
    parser.add_argument("--timeout-min", type=float, default=60.0)
    args = parser.parse_args(argv)
    args.root.mkdir(parents=True, exist_ok=True)
    rows = []
    for lines in (size_of(s) for s in args.sizes.split(",")):
        data = generated(args.root, lines)
        floor_s = floor(data)
        target = build_folder(data, args.root)
        log = args.root / f"build-{lines}.log"
        result = run_build(target, args.root / f"home-{lines}", args.kill_gib, args.timeout_min, log)
        report(lines, floor_s, result)
        daily = run_daily(target, args.root / f"home-{lines}", args.root / f"daily-{lines}.log")
        slowest = sorted(daily["steps"].items(), key=lambda kv: -kv[1])[:4]
        print(f"  daily path (a new day, refresh_and_monitor_job): {daily['outcome']} in "
              f"{daily['seconds']:.0f} s = {daily['seconds'] / result['seconds']:.3f}x the build; "
              "slowest steps: " + ", ".join(f"{k} {v:.0f} s" for k, v in slowest))  # fmt: skip
        rows.append(
            (lines, result["seconds"], result["peak"] / GIB, floor_s, result["outcome"], daily["seconds"])
        )
        print(f"  (log: {log})", flush=True)
    print("\nlines        build s   per M lines   peak GiB   floor s   build/floor   daily s   outcome")
    for lines, seconds, peak, floor_s, outcome, daily_s in rows:
        print(f"{lines:>11,} {seconds:9.0f} {seconds / (lines / 1e6):11.1f} {peak:10.2f} {floor_s:9.1f} "
              f"{seconds / floor_s:12.1f}x {daily_s:9.0f}   {outcome}")  # fmt: skip
    print(
        "targets: peak <= 6 GiB (goal 4) at every size; 20M lines <= 600 s; 50M lines <= 1,500 s; "
        "a new day at 20M lines <= 60 s"
    )


if __name__ == "__main__":
    main()
