"""`mlops-build` (README command 1): the Dagster CLI's run, read back from the instance, ends with
a summary whose last line, when a gate fails, is that gate's sentence (issue 31, point 3)."""

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from mlops_assets_tests.conftest import read_table, rewrite_transactions

BUILD = str(Path(sys.executable).parent / "mlops-build")


def build(data_dir: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLOPS_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(home)}
    home.mkdir(exist_ok=True)
    return subprocess.run(
        [BUILD, *args], env=env, capture_output=True, text=True, timeout=600, cwd=data_dir.parent
    )


def test_a_failed_build_ends_with_the_failed_gates_sentence(small_data_dir, tmp_path):
    # prices sent as text with a currency sign: the bronze schema gate blocks the run
    rewrite_transactions(small_data_dir, lambda df: df.assign(unit_price="EUR " + df["unit_price"]))
    run = build(small_data_dir, tmp_path / "home")  # the whole graph over the window
    assert run.returncode != 0
    lines = run.stdout.strip().splitlines()
    # the last lines are the failed gates' sentences: asset.check, column, rule, what to change
    failed = []
    for line in reversed(lines):
        if not line.startswith("FAILED "):
            break
        failed.insert(0, line)
    assert failed and lines[-1] == failed[-1]
    schema = next(x for x in failed if x.startswith("FAILED bronze_transactions.matches_source_schema: "))
    assert "'unit_price'" in schema and "rule" in schema and "To change: correct the values" in schema
    summary = lines[lines.index(next(x for x in lines if x.startswith("── mlops-build: run"))) :]
    assert "FAILURE" in summary[0]
    counts = next(x for x in summary if x.startswith("checks: "))
    assert re.fullmatch(r"checks: \d+ passed, \d+ warned, [1-9]\d* failed", counts), counts
    assert (
        not (small_data_dir / "warehouse.duckdb").exists()
        or read_table(small_data_dir, "information_schema.tables")
        .query("table_name == 'silver_transactions'")
        .empty
    )


def test_the_summary_counts_checks_and_ends_with_a_failed_steps_error_when_no_gate_failed():
    import dagster as dg

    from mlops_assets.build import summary

    def check(name, passed, severity=dg.AssetCheckSeverity.ERROR):
        return SimpleNamespace(
            asset_key=dg.AssetKey("forecast_backtest_report"),
            check_name=name,
            passed=passed,
            severity=severity,
            description=f"{name} sentence",
        )

    warned = check("interval_coverage_near_nominal", False, dg.AssetCheckSeverity.WARN)
    result = {
        "status": "FAILURE",
        "built": ["a", "b"],
        "passed": [check("beats_seasonal_naive", True)],
        "warned": [warned],
        "failed": [],
        "step_failures": [("forecast_sales", "ValueError: boom\nTraceback ...")],
    }
    lines = summary(result, "r1", {"sales_forecaster": "3", "clv_model": None})
    assert lines[1:3] == ["assets built: 2", "checks: 1 passed, 1 warned, 0 failed"]
    assert "  WARN forecast_backtest_report.interval_coverage_near_nominal: " in lines[3]
    assert "sales_forecaster v3, clv_model (none yet)" in lines[4]
    assert lines[-1] == "FAILED step forecast_sales: ValueError: boom"
    result["status"] = "SUCCESS"
    assert not any(x.startswith("FAILED") for x in summary(result, "r1", {}))
