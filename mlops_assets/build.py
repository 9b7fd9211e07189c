"""`mlops-build`: README command 1. Materializes the asset graph over the whole window with the
Dagster CLI (`dagster asset materialize`, one run, the instance in DAGSTER_HOME), then reads that
run back from the instance and ends with a summary: assets built, checks passed, warned and
failed, the champions, and where to look next. A failed run's last lines are the failed gates'
sentences (asset, check, the figure or column, the rule and what to change), so the reason is
what the terminal shows last, not a stack trace.

  mlops-build [--select '*'] [--partition-range 2023-01...2024-12]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

# imports stay light until the run has ended: this process waits beside the run, and its
# memory counts in the run's (the definitions, Dagster and the engines load in the run itself)

BIN = Path(sys.executable).parent  # the dagster CLI of this interpreter, venv activated or not


def command(select: str, partition_range: str) -> list[str]:
    dagster = str(BIN / "dagster") if (BIN / "dagster").exists() else "dagster"
    return [dagster, "asset", "materialize", "-m", "mlops_assets.definitions", "--select", select,
            "--partition-range", partition_range]  # fmt: skip


def whole_window() -> str:
    from mlops_assets.assets.partitions import window_of
    from mlops_assets.settings import load_settings

    keys = window_of(load_settings()).partitions.get_partition_keys()
    return f"{keys[0]}...{keys[-1]}"


def _whole_window_apart() -> str:
    """The window's months, computed in a short-lived process (it loads the settings)."""
    code = "from mlops_assets.build import whole_window; print(whole_window())"
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    if done.returncode:  # sources.yaml unusable: its sentence is the last line of the error
        raise SystemExit(f"FAILED: {(done.stderr.strip().splitlines() or ['no settings'])[-1]}")
    return done.stdout.strip()


def _events(instance, run_id: str, kind) -> list:
    return [e.dagster_event for e in instance.all_logs(run_id, of_type=kind) if e.dagster_event]


def outcome(instance, run_id: str) -> dict:
    """What the run built and judged, from its event log."""
    import dagster as dg

    built = {
        e.asset_key.to_user_string()
        for e in _events(instance, run_id, dg.DagsterEventType.ASSET_MATERIALIZATION)
    }
    checks = [
        e.event_specific_data for e in _events(instance, run_id, dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    failures = [
        (e.step_key, e.event_specific_data.error.message.strip() if e.event_specific_data.error else "")
        for e in _events(instance, run_id, dg.DagsterEventType.STEP_FAILURE)
    ]
    run = instance.get_run_by_id(run_id)
    return {
        "status": run.status.value if run else "UNKNOWN",
        "built": sorted(built),
        "passed": [c for c in checks if c.passed],
        "warned": [c for c in checks if not c.passed and c.severity == dg.AssetCheckSeverity.WARN],
        "failed": [c for c in checks if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR],
        "step_failures": failures,
    }


def _check_line(label: str, check) -> str:
    return f"{label} {check.asset_key.to_user_string()}.{check.check_name}: {check.description}"


def summary(result: dict, run_id: str, champions: dict[str, str | None], where: str = "") -> list[str]:
    """The lines printed after the run; a failed run's reasons come last."""
    failed = result["failed"]
    counts = f"{len(result['passed'])} passed, {len(result['warned'])} warned, {len(failed)} failed"
    models = ", ".join(f"{m} v{v}" if v else f"{m} (none yet)" for m, v in champions.items())
    lines = [
        f"── mlops-build: run {run_id} {result['status']} ──",
        f"assets built: {len(result['built'])}",
        f"checks: {counts}",
        *(_check_line("  WARN", c) for c in result["warned"]),
        f"champions: {models or 'none'}",
        f"next: `dagster dev` (http://localhost:3000){where}",
    ]
    if result["status"] == "SUCCESS":  # a non-blocking check failed at ERROR (drift, accuracy)
        return lines + [_check_line("FAILED", c) for c in failed]
    gates = [_check_line("FAILED", c) for c in failed]
    # a step that failed for another reason than a gate (an exception): its error's first line
    steps = [
        f"FAILED step {step}: {message.splitlines()[0] if message else 'see the run log'}"
        for step, message in result["step_failures"]
        if "AssetCheckFailedError" not in message
    ]
    return lines + (steps + gates if gates or steps else [f"FAILED run {run_id}: see the run log"])


def champions_of() -> dict[str, str | None]:
    from mlops_assets.assets.registry import models_of
    from mlops_assets.definitions import registry_resource
    from mlops_assets.settings import load_settings

    settings = load_settings()
    registry = registry_resource(settings)
    out = {}
    for model in models_of(settings):
        champion = registry.champion(model)
        out[model] = str(champion.version) if champion is not None else None
    return out


def where_to_look() -> str:
    from mlops_assets.resources.tracking import tracking_uri
    from mlops_assets.settings import load_settings

    settings = load_settings()
    return (
        f", `mlflow ui --backend-store-uri {tracking_uri(settings)}`, "
        f"SQL over {settings.warehouse_path} (read-only)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlops-build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--select", default="*", help="asset selection (default: the whole graph)")
    parser.add_argument("--partition-range", default=None, help="first...last month (default: the window)")
    args = parser.parse_args(argv)
    if not os.environ.get("DAGSTER_HOME"):
        os.environ["DAGSTER_HOME"] = str(Path.cwd() / ".dagster_home")
        print(f"DAGSTER_HOME not set: using {os.environ['DAGSTER_HOME']}", flush=True)
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)  # the run history lives there
    started = time.time()
    code = subprocess.run(
        command(args.select, args.partition_range or _whole_window_apart()), check=False
    ).returncode
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        records = instance.get_run_records(limit=1)
        if not records or records[0].create_timestamp.timestamp() < started - 1:
            print(f"FAILED: dagster asset materialize exited with {code} before starting a run", flush=True)
            return code or 1
        run_id = records[0].dagster_run.run_id
        result = outcome(instance, run_id)
    for line in summary(result, run_id, champions_of(), where_to_look()):
        print(line, flush=True)
    return 0 if code == 0 and result["status"] == "SUCCESS" else (code or 1)


if __name__ == "__main__":
    sys.exit(main())
