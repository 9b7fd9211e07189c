"""Sensors that start retraining (drift, degraded accuracy, stale models), ingest new source
files, and alert on failures. They decide from the instance's event log and materialization
metadata, never by opening the warehouse (DuckDB allows one writer process); each decision is
a function of its inputs (the clock included), so tests evaluate one tick and assert on it."""

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import pandas as pd

from mlops_assets.assets.monitoring import DEGRADED, DRIFT_LEVEL
from mlops_assets.assets.partitions import KEY_FORMAT, window_of
from mlops_assets.assets.registry import TRAINING_ASSETS, training_assets_of
from mlops_assets.automation.jobs import (
    RETRAIN_REASON,
    refresh_and_monitor_job,
    retrain_forecaster_job,
    train_models_job,
    training_under_way,
)
from mlops_assets.core import ingestion, monitoring
from mlops_assets.core.schemas import CANONICAL
from mlops_assets.resources.alerts import AlertWebhook
from mlops_assets.settings import Settings

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
# the assets whose last materialization is a model's training time
MODEL_ASSETS = TRAINING_ASSETS


def clock() -> float:
    """Now, in POSIX seconds (tests replace it to move time)."""
    return time.time()


def metadata_of(event: dg.EventLogEntry) -> dict:
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def busy(context) -> dg.SkipReason | None:
    """Skip while a training run is queued or running: it retrains the same models."""
    run = training_under_way(context.instance)
    if run is None:
        return None
    return dg.SkipReason(f"{run.job_name} run {run.run_id} is already under way: it retrains the models")


def retrain_request(reason: str, report: dg.EventLogEntry, tags: dict[str, str]) -> dg.RunRequest:
    """One retraining per monitoring report: the report's run id is in the run key."""
    return dg.RunRequest(
        run_key=f"{reason}:{report.run_id}",
        tags={RETRAIN_REASON: reason, "mlops/trigger_run": report.run_id, **tags},
    )


@dg.asset_sensor(
    asset_key=dg.AssetKey("feature_drift_report"),
    job=train_models_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def drift_retrain_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    """A feature drift report at level `significant` starts one retraining of every model,
    tagged data_drift; the report's run id is the run key, so one report never starts two."""
    meta = metadata_of(asset_event)
    if meta.get(DRIFT_LEVEL) != monitoring.SIGNIFICANT:
        return dg.SkipReason(f"drift level {meta.get(DRIFT_LEVEL, 'unknown')}: no retraining")
    if skip := busy(context):
        return skip
    columns = meta.get("drifted_column_names", "[]")[:4000]
    return retrain_request("data_drift", asset_event, {"mlops/drifted_columns": columns})


def performance_sensor(asset: str, name: str) -> dg.SensorDefinition:
    @dg.asset_sensor(
        asset_key=dg.AssetKey(asset),
        job=retrain_forecaster_job,
        name=name,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
        """Forecast performance flagged degraded (rolling MASE beyond the tolerance over the
        backtest) starts one forecaster retraining, tagged performance_degradation."""
        meta = metadata_of(asset_event)
        if not meta.get(DEGRADED):
            return dg.SkipReason(f"forecast accuracy within tolerance: {meta.get('reason', '')}")
        if skip := busy(context):  # a full retraining (started by drift, say) retrains the forecaster too
            return skip
        ratio = f"{meta.get('median_mase_ratio', float('nan')):.3f}"
        return retrain_request("performance_degradation", asset_event, {"mlops/median_mase_ratio": ratio})

    return sensor


performance_retrain_sensor = performance_sensor("forecast_performance", "performance_retrain_sensor")
# the catalog forecaster's (assets/catalog.py), when forecast.levels reach products
catalog_performance_sensor = performance_sensor(
    "catalog_forecast_performance", "catalog_performance_retrain_sensor"
)


def build_stale_model_sensor(settings: Settings) -> dg.SensorDefinition:
    max_age = settings.monitoring.model_max_age_days

    @dg.sensor(
        job=train_models_job,
        minimum_interval_seconds=3600,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def stale_model_sensor(context: dg.SensorEvaluationContext):
        """A model last trained more than monitoring.model_max_age_days ago is retrained (tag
        stale_model), whatever the freshness daemon shows; the training times in the run key
        make one stale state start one run."""
        trained = {}
        for name in training_assets_of(settings):
            event = context.instance.get_latest_materialization_event(dg.AssetKey(name))
            trained[name] = event.timestamp if event is not None else None
        stale = monitoring.stale_models(trained, clock(), max_age)
        if not stale:
            return dg.SkipReason(f"every trained model is younger than {max_age:g} days")
        if skip := busy(context):
            return skip
        key = ",".join(f"{n}@{trained[n]:.0f}" for n in sorted(stale))
        return dg.RunRequest(
            run_key=f"stale_model:{key}",
            tags={
                RETRAIN_REASON: "stale_model",
                "mlops/stale_models": ",".join(sorted(stale)),
                "mlops/stale_reason": "; ".join(stale.values())[:4000],
            },
        )

    return stale_model_sensor


def fingerprints(settings: Settings) -> dict[str, list]:
    """Every source file sources.yaml matches now (globs re-resolved): source, mtime, size."""
    out = {}
    for name in CANONICAL:  # transactions, products, inventory
        for path in settings.files(name):
            stat = path.stat()
            out[str(path)] = [name, stat.st_mtime_ns, stat.st_size]
    return out


def touched_partitions(settings: Settings, files: list[str]) -> list[str]:
    """Partition keys (months inside the window) of the order timestamps in `files`."""
    spec = settings.transactions
    raw = ingestion.read_source(
        "transactions",
        [Path(f) for f in files],
        spec.read,
        {"order_ts": spec.columns["order_ts"]},
        settings.data_dir,
    )
    ts = ingestion.parse_column(raw.frame["order_ts"], "datetime", spec.read.get("date_format"))
    months = set(ts.dropna().dt.strftime(KEY_FORMAT))
    keys = window_of(settings).partitions.get_partition_keys()
    return [k for k in keys if k in months]


def build_new_data_sensor(settings: Settings) -> dg.SensorDefinition:
    @dg.sensor(
        job=refresh_and_monitor_job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def new_data_sensor(context: dg.SensorEvaluationContext):
        """New or changed source files start one ingestion-and-monitoring run over the monthly
        partitions their orders fall on (catalog or inventory changes: the last partition).
        The first tick takes the files present as the baseline, except those written after
        the last ingestion (they arrived while the sensor was off)."""
        now = fingerprints(settings)
        if context.cursor is None:
            last = context.instance.get_latest_materialization_event(dg.AssetKey("bronze_transactions"))
            since = last.timestamp * 1e9 if last is not None else float("inf")
            before = {f: fp for f, fp in now.items() if fp[1] <= since}
            if len(before) == len(now):
                context.update_cursor(json.dumps(now))
                return dg.SkipReason(f"baseline: {len(now)} source files recorded")
        else:
            before = json.loads(context.cursor)
        changed = sorted(f for f, fp in now.items() if before.get(f) != fp)
        context.update_cursor(json.dumps(now))
        if not changed:
            return dg.SkipReason("no new or changed source files")
        tx_files = [f for f in changed if now[f][0] == "transactions"]
        keys = touched_partitions(settings, tx_files) if tx_files else []
        if not keys:  # catalog / inventory, or only out-of-window rows: refresh the last day
            keys = window_of(settings).partitions.get_partition_keys()[-1:]
        digest = hashlib.sha1(json.dumps({f: now[f] for f in changed}).encode()).hexdigest()[:16]
        return dg.RunRequest(
            run_key=f"new_data:{digest}",
            tags={
                RANGE_START: keys[0],
                RANGE_END: keys[-1],
                "mlops/new_files": ",".join(changed)[:4000],
            },
        )

    return new_data_sensor


def _check_alerts(context, check_keys: Sequence[dg.AssetCheckKey], seen: dict) -> list[dict]:
    alerts = []
    for key in check_keys:
        record = context.instance.get_latest_asset_check_evaluation_record(key)
        name = key.to_user_string()
        if record is None or record.event is None or record.id <= seen.get(name, 0):
            continue
        seen[name] = record.id
        evaluation = record.event.dagster_event.event_specific_data
        if getattr(evaluation, "passed", True):
            continue
        warning = evaluation.severity == dg.AssetCheckSeverity.WARN
        alerts.append(
            {
                "kind": "check_warned" if warning else "check_failed",
                "severity": evaluation.severity.value,
                "asset": key.asset_key.to_user_string(),
                "check": key.name,
                "blocking": bool(getattr(evaluation, "blocking", False)),
                "description": evaluation.description or "",
                "run_id": record.run_id,
                "time": pd.Timestamp(record.create_timestamp, unit="s", tz="UTC").isoformat(),
            }
        )
    return alerts


def _run_alerts(context, cursor: str | None) -> tuple[list[dict], str | None]:
    result = context.instance.fetch_run_status_changes(
        dg.DagsterEventType.RUN_FAILURE, limit=50, cursor=cursor, ascending=True
    )
    alerts = []
    for record in result.records:
        run = context.instance.get_run_by_id(record.event_log_entry.run_id)
        alerts.append(
            {
                "kind": "run_failed",
                "severity": "ERROR",
                "job": run.job_name if run else "",
                "run_id": record.event_log_entry.run_id,
                "description": record.event_log_entry.message or "run failed",
                "tags": {k: v for k, v in (run.tags if run else {}).items() if k.startswith("mlops/")},
                "time": pd.Timestamp(record.timestamp, unit="s", tz="UTC").isoformat(),
            }
        )
    return alerts, result.cursor or cursor


def _alert_id(alert: dict) -> str:
    """Stable per event: a receiver can drop an alert it already has."""
    what = alert.get("check") or alert.get("job") or ""
    return hashlib.sha256(
        f"{alert['kind']}|{alert.get('asset', '')}|{what}|{alert['run_id']}".encode()
    ).hexdigest()[:16]


def build_alert_sensor(check_keys: Sequence[dg.AssetCheckKey]) -> dg.SensorDefinition:
    @dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
    def alert_sensor(context: dg.SensorEvaluationContext, alerts: AlertWebhook):
        """Failed runs and checks failed at ERROR severity (blocking gates, significant drift,
        forecast accuracy) since the last tick: each goes to the log and, when
        MLOPS_ALERT_WEBHOOK_URL is set, to that webhook as JSON with a stable `alert_id`. Checks
        failed at WARN severity are warnings, reported apart: in the log and the tick's message,
        never sent as alerts. An alert the webhook refused or did not answer
        in time stays in the cursor and is sent again on the next tick; one delivered is never
        sent twice."""
        state = json.loads(context.cursor) if context.cursor else {"runs": None, "checks": {}}
        found = _check_alerts(context, check_keys, state["checks"])
        runs, state["runs"] = _run_alerts(context, state["runs"])
        tagged = [{"source": "mlops_assets", "alert_id": _alert_id(a), **a} for a in [*found, *runs]]
        new = [a for a in tagged if a["kind"] != "check_warned"]
        warned = [a for a in tagged if a["kind"] == "check_warned"]
        for alert in new:
            target = alert.get("check") or alert.get("job")
            context.log.error(f"ALERT {alert['kind']} {target}: {alert['description']}")
        for warning in warned:  # reported apart: in the log and the tick, never sent as an alert
            context.log.warning(f"WARNING {warning['asset']}.{warning['check']}: {warning['description']}")
        names = ", ".join(f"{w['asset']}.{w['check']}" for w in warned)
        apart = f"; {len(warned)} warnings, not alerted: {names}" if warned else ""
        kept = state.get("pending", [])
        pending, failures = [], []
        for alert in [*kept, *new]:
            try:
                alerts.send(alert)
            except (OSError, RuntimeError) as exc:  # refused, unreachable, timed out, HTTP error
                pending.append(alert)
                failures.append(f"{alert['alert_id']}: {type(exc).__name__}: {exc}")
        state["pending"] = pending
        context.update_cursor(json.dumps(state, default=str))
        if failures:
            context.log.error(
                f"{len(failures)} alerts not delivered, kept for the next tick: " + "; ".join(failures)
            )
        if not new and not kept:
            return dg.SkipReason(f"no failed run or blocking check since the last tick{apart}")
        return dg.SkipReason(
            f"{len(new)} new alerts, {len(kept)} kept from earlier ticks; {len(pending)} not delivered, "
            f"kept for the next tick{apart}"
        )

    return alert_sensor


def build_sensors(settings: Settings, check_keys: Sequence[dg.AssetCheckKey]) -> list:
    return [
        drift_retrain_sensor,
        performance_retrain_sensor,
        *([catalog_performance_sensor] if settings.forecast.catalog else []),
        build_stale_model_sensor(settings),
        build_new_data_sensor(settings),
        build_alert_sensor(check_keys),
    ]
