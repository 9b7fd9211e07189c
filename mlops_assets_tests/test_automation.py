"""Monitoring assets, sensors, schedules and freshness over a real Dagster instance
(instance_for_test: SQLite storage in a temp folder), as dagster-io's project_fully_featured
tests sensors: materialize upstream, evaluate one tick, assert on the run requests and tags.

Pressure tests: 3 (corrupt data is blocked and alerted), 4 (an accuracy drop starts a
forecaster retraining), 7 (drift in ten features starts a retraining), 10 (degradation is
detected and alerted within one sensor tick)."""

import datetime as dt
import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from mlops_assets.assets import transactions
from mlops_assets.assets.catalog_monitoring import build_catalog_monitoring
from mlops_assets.assets.monitoring import build_monitoring_assets
from mlops_assets.assets.segmentation import build_segmentation_assets
from mlops_assets.automation import sensors
from mlops_assets.automation.jobs import RETRAIN_REASON
from mlops_assets.definitions import build_definitions, resources
from mlops_assets.resources.alerts import AlertWebhook
from mlops_assets.settings import load_settings
from mlops_assets_tests.conftest import (
    INGESTION,
    edit_sources,
    group_keys,
    read_table,
    rewrite_transactions,
    run_graph,
)
from mlops_assets_tests.stubs import lines, product_features, upstream
from mlops_assets_tests.test_monitoring import history, issue
from mlops_assets_tests.test_segmentation import customers


class Webhook:
    """A local HTTP server standing in for Slack / an incident tool: records each POST (after
    `delay` seconds: a webhook slower than the resource's timeout)."""

    def __init__(self, delay: float = 0.0):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                time.sleep(delay)
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.server.shutdown()


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def materialize(data_dir, assets, instance, selection=None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets,
        resources=resources(load_settings(data_dir)),
        instance=instance,
        selection=selection,
        raise_on_error=False,
    )


def tick(defs: dg.Definitions, name: str, instance, cursor=None, **res):
    sensor = defs.resolve_sensor_def(name)
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources=res)
    return sensor.evaluate_tick(context)


def span(request: dg.RunRequest) -> tuple[str, str]:
    return request.tags[sensors.RANGE_START], request.tags[sensors.RANGE_END]


def alerts_tick(data_dir, instance, hook: Webhook, cursor=None):
    defs = build_definitions(load_settings(data_dir))
    return tick(defs, "alert_sensor", instance, cursor, alerts=AlertWebhook(url=hook.url))


# ---- drift (pressure test 7) ----------------------------------------------------------------


def wide_customers(seed: int, shift: int = 0) -> pd.DataFrame:
    """Twenty features: the six of test_segmentation.customers (RFM, what the segmenter
    clusters on, among them) and fourteen more; the first `shift` extra ones moved by one
    standard deviation."""
    table = customers(seed=seed)
    rng = np.random.default_rng(seed + 100)
    for i in range(14):
        table[f"extra_{i:02d}"] = rng.normal(1.0 if i < shift else 0.0, 1.0, len(table))
    return table


def monitored(data_dir, table: pd.DataFrame | None = None, actuals: pd.DataFrame | None = None) -> list:
    """The segmentation and monitoring assets over stand-in upstream tables."""
    settings = load_settings(data_dir)
    actuals = history(84) if actuals is None else actuals
    return [
        upstream("customer_features", "features", wide_customers(0) if table is None else table),
        upstream("silver_transactions", "silver", lines("2023-03-01", 30)),
        upstream("product_features", "features", product_features()),
        upstream("sales_series", "forecasting", actuals.assign(level="total", key="total", units=1.0)),
        *build_segmentation_assets(settings),
        # no forecaster here: drift finds no champion of it (an optional input)
        dg.AssetSpec("sales_forecaster").with_io_manager_key("model_io_manager"),
        *build_monitoring_assets(settings),
    ]


def test_pressure_7_drift_in_ten_features_starts_one_retraining(small_data_dir, instance, webhook):
    # the champion segmenter is trained on 20 features (a snapshot is stored with it)
    train = dg.AssetSelection.assets("customer_segmenter", "segmentation_report").upstream()
    assert materialize(small_data_dir, monitored(small_data_dir), instance, train).success
    defs = build_definitions(load_settings(small_data_dir))
    # the drift report and its tables, scored against the registry's champions (not retrained)
    models = dg.AssetSelection.assets("customer_segmenter", "sales_forecaster")
    report_only = dg.AssetSelection.assets("feature_drift_report").upstream() - models

    # new customers from the same population: no drift, no retraining
    same = materialize(small_data_dir, monitored(small_data_dir, wide_customers(1)), instance, report_only)
    check = same.get_asset_check_evaluations()[0]
    assert check.check_name == "no_significant_drift" and check.passed, check.description
    first = tick(defs, "drift_retrain_sensor", instance)
    assert not first.run_requests and "drift level none" in first.skip_message

    # then ten of the twenty features shift
    shifted = monitored(small_data_dir, wide_customers(2, 10))
    result = materialize(small_data_dir, shifted, instance, report_only)
    check = result.get_asset_check_evaluations()[0]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    report = read_table(small_data_dir, "monitoring.feature_drift_report")
    features = report[report["dataset"] == "customer_features"].set_index("column")
    assert len(features) == 20 and set(features["method"]) == {"ks", "chi_square"}  # under 1000 rows
    flagged = set(features.index[features["drifted"]])
    assert flagged == {f"extra_{i:02d}" for i in range(10)}  # all shifted, none of the others
    assert features.loc["recency_days", "reference_version"] == "1"
    meta = next(
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key.path == ["feature_drift_report"]
    )
    assert meta["drift_level"].value == "significant" and meta["drifted_columns"].value == 10
    assert meta["classifier_auc_customer_features"].value > 0.8  # the domain classifier agrees
    segments = report[report["dataset"] == "segments"].iloc[0]
    assert segments["psi"] < 0.1  # the segmenter's own features did not move

    second = tick(defs, "drift_retrain_sensor", instance, first.cursor)
    (request,) = second.run_requests
    assert request.tags[RETRAIN_REASON] == "data_drift" and request.run_key == f"data_drift:{result.run_id}"
    assert "customer_features.extra_00" in request.tags["mlops/drifted_columns"]
    assert defs.resolve_sensor_def("drift_retrain_sensor").job_name == "train_models_job"
    # the same report never starts a second retraining
    assert not tick(defs, "drift_retrain_sensor", instance, second.cursor).run_requests

    # and the failed drift check is alerted
    alerts_tick(small_data_dir, instance, webhook)
    drift_alerts = [a for a in webhook.received if a.get("check") == "no_significant_drift"]
    assert drift_alerts and drift_alerts[0]["severity"] == "ERROR"
    assert "significant drift" in drift_alerts[0]["description"]


# ---- forecast performance (pressure tests 4 and 10) --------------------------------------------


def issue_forecast(data_dir, actuals: pd.DataFrame) -> None:
    folder = load_settings(data_dir).issued_forecasts_dir
    folder.mkdir(parents=True, exist_ok=True)
    issue(actuals, "2024-02-25", 28, "1", backtest_mase=1.0).to_parquet(
        folder / "origin=2024-02-25_v1.parquet"
    )


def test_pressure_4_and_10_an_accuracy_drop_is_alerted_and_retrains_within_one_tick(
    small_data_dir, instance, webhook
):
    actuals = history(84)
    issue_forecast(small_data_dir, actuals)
    defs = build_definitions(load_settings(small_data_dir))
    selection = dg.AssetSelection.assets("forecast_performance").upstream()

    steady = materialize(small_data_dir, monitored(small_data_dir, actuals=actuals), instance, selection)
    assert steady.get_asset_check_evaluations()[0].passed
    quiet = tick(defs, "performance_retrain_sensor", instance)
    assert not quiet.run_requests and "within tolerance" in quiet.skip_message
    cursor = alerts_tick(small_data_dir, instance, webhook).cursor
    assert webhook.received == []

    # sales halve after the forecast was issued
    dropped = actuals.assign(
        revenue=np.where(actuals["period"] > "2024-02-25", actuals["revenue"] * 0.5, actuals["revenue"])
    )
    started = time.monotonic()
    result = materialize(small_data_dir, monitored(small_data_dir, actuals=dropped), instance, selection)
    check = result.get_asset_check_evaluations()[0]
    assert check.check_name == "forecast_accuracy_within_tolerance" and not check.passed
    table = read_table(small_data_dir, "monitoring.forecast_performance")
    assert table.loc[0, "mase_ratio"] > 1.2 and table.loc[0, "periods"] == 28 and table.loc[0, "degraded"]

    # one tick of each sensor after the report: a retraining request and an alert
    requested = tick(defs, "performance_retrain_sensor", instance, quiet.cursor)
    (request,) = requested.run_requests
    assert request.tags[RETRAIN_REASON] == "performance_degradation"
    assert request.run_key == f"performance_degradation:{result.run_id}"
    assert float(request.tags["mlops/median_mase_ratio"]) > 1.2
    # had a full retraining (started by drift, say) been under way, it would cover the forecaster
    job = defs.resolve_job_def("train_models_job")
    queued = instance.create_run_for_job(job)  # NOT_STARTED: launched, not yet running
    covered = tick(defs, "performance_retrain_sensor", instance, quiet.cursor)
    assert not covered.run_requests and queued.run_id in covered.skip_message
    instance.report_run_canceled(queued)
    alerts_tick(small_data_dir, instance, webhook, cursor)
    (alert,) = webhook.received
    assert alert["check"] == "forecast_accuracy_within_tolerance" and alert["asset"] == "forecast_performance"
    assert "exceeds" in alert["description"] and alert["run_id"] == result.run_id
    print(f"degradation detected and alerted {time.monotonic() - started:.1f} s after the actuals landed")


def test_a_catalog_accuracy_drop_is_scored_at_every_level_and_retrains_through_its_own_sensor(
    small_data_dir, instance
):
    """The catalog's monitoring: forecasts issued for one product in one store and every level
    above it are scored on the catalog's actuals; when sales halve, the check fails and
    catalog_performance_retrain_sensor requests one forecaster retraining."""
    edit_sources(small_data_dir, lambda s: s["forecast"].update(levels=["total", "product_store"]))
    settings = load_settings(small_data_dir)
    actuals = history(84)
    ids = ["total", "store=S1", "category=C", "product=P1", "product=P1/store=S1"]
    folder = settings.catalog_issued_dir
    folder.mkdir(parents=True, exist_ok=True)
    issued = issue(actuals, "2024-02-25", 28, "1", backtest_mase=1.0)
    pd.concat([issued.assign(series_id=i) for i in ids]).to_parquet(folder / "origin=2024-02-25_v1.parquet")
    defs = build_definitions(settings)
    assert "catalog_performance_retrain_sensor" in {s.name for s in defs.sensors}

    def bottom(frame):
        return frame.assign(product_id="P1", store_id="S1", category="C")[
            ["product_id", "store_id", "category", "period", "revenue"]
        ]

    def run(frame):
        stand_in = upstream("catalog_series", "forecasting", bottom(frame))
        assets = [stand_in, *build_catalog_monitoring(settings)]
        return materialize(small_data_dir, assets, instance, dg.AssetSelection.all())

    steady = run(actuals)
    assert steady.get_asset_check_evaluations()[0].passed
    table = read_table(small_data_dir, "monitoring.catalog_forecast_performance")
    assert sorted(table["series_id"]) == sorted(ids) and (table["periods"] == 28).all()
    quiet = tick(defs, "catalog_performance_retrain_sensor", instance)
    assert not quiet.run_requests and "within tolerance" in quiet.skip_message

    dropped = actuals.assign(
        revenue=np.where(actuals["period"] > "2024-02-25", actuals["revenue"] * 0.5, actuals["revenue"])
    )
    result = run(dropped)
    check = result.get_asset_check_evaluations()[0]
    assert check.check_name == "catalog_accuracy_within_tolerance" and not check.passed
    table = read_table(small_data_dir, "monitoring.catalog_forecast_performance")
    assert table["degraded"].all() and (table["mase_ratio"] > 1.2).all()
    (request,) = tick(defs, "catalog_performance_retrain_sensor", instance, quiet.cursor).run_requests
    assert request.tags[RETRAIN_REASON] == "performance_degradation"
    assert defs.resolve_sensor_def("catalog_performance_retrain_sensor").job_name == "retrain_forecaster_job"
    retrains = defs.resolve_job_def("retrain_forecaster_job").asset_layer.executable_asset_keys
    assert dg.AssetKey("catalog_forecaster") in retrains  # the retraining covers the catalog


# ---- new files, corrupt data (pressure test 3) -------------------------------------------------


def test_new_data_sensor_requests_the_days_of_a_new_file(small_data_dir, instance):
    edit_sources(small_data_dir, lambda s: s["transactions"].update(path="raw/transactions*.csv.gz"))
    defs = build_definitions(load_settings(small_data_dir))
    baseline = tick(defs, "new_data_sensor", instance)
    assert not baseline.run_requests and "baseline" in baseline.skip_message
    assert not tick(defs, "new_data_sensor", instance, baseline.cursor).run_requests

    raw = pd.read_csv(small_data_dir / "raw" / "transactions.csv.gz")
    late = raw[raw["invoice_ts"].str[:10].isin(["2023-03-30", "2023-03-31"])].copy()
    late["invoice_id"] = "LATE" + late["invoice_id"].astype(str)
    late.to_csv(small_data_dir / "raw" / "transactions_late.csv.gz", index=False)
    found = tick(defs, "new_data_sensor", instance, baseline.cursor)
    (request,) = found.run_requests
    # the month that holds those days, not the window
    assert (request.tags[sensors.RANGE_START], request.tags[sensors.RANGE_END]) == ("2023-03", "2023-03")
    assert request.tags["mlops/new_files"].endswith("transactions_late.csv.gz")
    assert not tick(defs, "new_data_sensor", instance, found.cursor).run_requests


@pytest.mark.slow
def test_pressure_3_corrupt_data_is_blocked_and_alerted(small_data_dir, instance, webhook):
    ingest = group_keys(small_data_dir, *INGESTION)
    assert run_graph(small_data_dir, "2023-01-01", "2023-03-31", instance, ingest).success
    silver_before = read_table(small_data_dir, "silver.silver_transactions")
    defs = build_definitions(load_settings(small_data_dir))
    baseline = tick(defs, "new_data_sensor", instance)
    cursor = alerts_tick(small_data_dir, instance, webhook).cursor
    webhook.received.clear()

    # the upstream system starts sending prices as text with a currency sign
    started = time.monotonic()
    path = small_data_dir / "raw" / "transactions.csv.gz"
    raw = pd.read_csv(path)
    raw["unit_price"] = "EUR " + raw["unit_price"].astype(str)
    with gzip.open(path, "wt") as fh:
        raw.to_csv(fh, index=False)
    (request,) = tick(defs, "new_data_sensor", instance, baseline.cursor).run_requests
    assert span(request) == ("2023-01", "2023-03")
    job = defs.resolve_job_def("refresh_and_monitor_job")
    result = job.execute_in_process(instance=instance, tags=request.tags, raise_on_error=False)
    assert not result.success
    gate = next(
        e
        for e in result.get_asset_check_evaluations()
        if (e.asset_key.path[0], e.check_name) == ("bronze_transactions", "matches_source_schema")
    )
    assert not gate.passed and "unit_price" in gate.description
    pd.testing.assert_frame_equal(read_table(small_data_dir, "silver.silver_transactions"), silver_before)

    alerts_tick(small_data_dir, instance, webhook, cursor)
    kinds = {(a["kind"], a.get("check") or a.get("job")) for a in webhook.received}
    assert ("check_failed", "matches_source_schema") in kinds and (
        "run_failed",
        "refresh_and_monitor_job",
    ) in kinds
    schema_alert = next(a for a in webhook.received if a.get("check") == "matches_source_schema")
    assert "unit_price" in schema_alert["description"] and schema_alert["blocking"]
    print(f"corrupt file blocked and alerted {time.monotonic() - started:.1f} s after it landed")


@pytest.mark.slow
def test_a_warning_is_reported_apart_and_not_alerted(small_data_dir, instance, webhook):
    ingest = group_keys(small_data_dir, *INGESTION)
    assert run_graph(small_data_dir, "2023-01-01", "2023-03-31", instance, ingest).success
    cursor = alerts_tick(small_data_dir, instance, webhook).cursor
    webhook.received.clear()
    # a shorter re-export of February: its missing days keep their lines, with a warning
    rewrite_transactions(small_data_dir, lambda df: df[df["invoice_ts"].str[:10] != "2023-02-07"])
    result = run_graph(small_data_dir, "2023-02-01", "2023-02-28", instance, ingest)
    assert result.success
    assert not transactions.COVERAGE.spec.blocking  # a warning is not labelled blocking in the UI

    ticked = alerts_tick(small_data_dir, instance, webhook, cursor)
    assert not [a for a in webhook.received if a.get("check") == "feed_covers_published_days"]
    assert "1 warnings, not alerted: bronze_transactions.feed_covers_published_days" in ticked.skip_message


# ---- stale models, schedules, manual runs, freshness -------------------------------------------


def test_stale_model_sensor_decides_with_a_controlled_clock(small_data_dir, instance, monkeypatch):
    instance.report_runless_asset_event(dg.AssetMaterialization("customer_segmenter"))
    trained = instance.get_latest_materialization_event(dg.AssetKey("customer_segmenter")).timestamp
    defs = build_definitions(load_settings(small_data_dir))
    monkeypatch.setattr(sensors, "clock", lambda: trained + 6.9 * 86_400)
    assert not tick(defs, "stale_model_sensor", instance).run_requests
    monkeypatch.setattr(sensors, "clock", lambda: trained + 7.5 * 86_400)
    (request,) = tick(defs, "stale_model_sensor", instance).run_requests
    assert (
        request.tags[RETRAIN_REASON] == "stale_model"
        and request.tags["mlops/stale_models"] == "customer_segmenter"
    )
    # the same stale state gives the same run key: the daemon starts it once
    assert tick(defs, "stale_model_sensor", instance).run_requests[0].run_key == request.run_key
    edit_sources(small_data_dir, lambda s: s.update(monitoring={"model_max_age_days": 14}))
    longer = build_definitions(load_settings(small_data_dir))
    assert not tick(longer, "stale_model_sensor", instance).run_requests


def test_schedules_weekly_retraining_sunday_2am_and_daily_monitoring(small_data_dir, instance):
    defs = build_definitions(load_settings(small_data_dir))
    weekly = defs.resolve_schedule_def("weekly_retrain_schedule")
    assert weekly.cron_schedule == "0 2 * * 0" and weekly.job_name == "train_models_job"
    sunday = dt.datetime(2026, 11, 22, 2, tzinfo=dt.UTC)
    (request,) = weekly.evaluate_tick(
        dg.build_schedule_context(instance=instance, scheduled_execution_time=sunday)
    ).run_requests
    assert request.tags[RETRAIN_REASON] == "schedule"
    daily = defs.resolve_schedule_def("daily_monitoring_schedule")
    assert daily.job_name == "refresh_and_monitor_job"
    at = dt.datetime(2023, 2, 10, 1, tzinfo=dt.UTC)
    repo = defs.get_repository_def()
    (run,) = daily.evaluate_tick(
        dg.build_schedule_context(instance=instance, scheduled_execution_time=at, repository_def=repo)
    ).run_requests
    assert (
        run.partition_key == "2023-02" and run.run_key == "day:2023-02-09"
    )  # the month of the day that ended
    first = dt.datetime(2023, 3, 1, 1, tzinfo=dt.UTC)  # 1 March: February just ended
    (run,) = daily.evaluate_tick(
        dg.build_schedule_context(instance=instance, scheduled_execution_time=first, repository_def=repo)
    ).run_requests
    assert run.partition_key == "2023-02"
    after = dt.datetime(2023, 4, 2, 1, tzinfo=dt.UTC)  # the window ends 2023-03-31
    skipped = daily.evaluate_tick(
        dg.build_schedule_context(instance=instance, scheduled_execution_time=after, repository_def=repo)
    )
    assert not skipped.run_requests and "after the window's end_date" in skipped.skip_message
    # retries on the flaky steps of the scheduled jobs
    for name in ("train_models_job", "refresh_and_monitor_job", "retrain_forecaster_job"):
        policy = defs.resolve_job_def(name).op_retry_policy
        assert policy is not None and policy.max_retries == 2


def test_manual_runs_are_tagged_manual_and_models_and_sources_have_freshness(small_data_dir):
    edit_sources(small_data_dir, lambda s: s.update(monitoring={"model_max_age_days": 3}))
    defs = build_definitions(load_settings(small_data_dir))
    for job in ("train_models_job", "retrain_forecaster_job"):
        assert defs.resolve_job_def(job).run_tags[RETRAIN_REASON] == "manual"
    graph = defs.resolve_asset_graph()
    for model in sensors.MODEL_ASSETS:
        assert graph.get(dg.AssetKey(model)).freshness_policy.fail_window.to_timedelta() == dt.timedelta(
            days=3
        )
    for source in ("bronze_transactions", "bronze_products", "bronze_inventory"):
        policy = graph.get(dg.AssetKey(source)).freshness_policy
        assert policy.fail_window.to_timedelta() == dt.timedelta(hours=48)


def test_new_data_sensor_first_tick_picks_up_files_written_after_the_last_ingestion(small_data_dir, instance):
    edit_sources(small_data_dir, lambda s: s["transactions"].update(path="raw/transactions*.csv.gz"))
    defs = build_definitions(load_settings(small_data_dir))
    instance.report_runless_asset_event(dg.AssetMaterialization("bronze_transactions", partition="2023-03"))
    time.sleep(0.05)
    raw = pd.read_csv(small_data_dir / "raw" / "transactions.csv.gz")
    late = raw[raw["invoice_ts"].str[:10] == "2023-03-15"].assign(
        invoice_id=lambda d: "LATE" + d["invoice_id"]
    )
    late.to_csv(small_data_dir / "raw" / "transactions_late.csv.gz", index=False)
    (request,) = tick(defs, "new_data_sensor", instance).run_requests  # the sensor was just turned on
    assert span(request) == ("2023-03", "2023-03")


# ---- alert delivery ---------------------------------------------------------------------------


def closed_port_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/alerts"  # nothing listens there: connection refused


def test_undelivered_alerts_are_kept_and_sent_once_when_the_webhook_answers(
    small_data_dir, instance, webhook
):
    @dg.asset
    def broken_asset():
        raise ValueError("boom")

    assert not dg.materialize([broken_asset], instance=instance, raise_on_error=False).success
    defs = build_definitions(load_settings(small_data_dir))

    refused = tick(defs, "alert_sensor", instance, alerts=AlertWebhook(url=closed_port_url()))
    assert "1 new alerts, 0 kept from earlier ticks; 1 not delivered" in refused.skip_message
    slow = Webhook(delay=2.0)
    try:  # the webhook does not answer within the timeout: still kept, not lost
        late = tick(
            defs,
            "alert_sensor",
            instance,
            refused.cursor,
            alerts=AlertWebhook(url=slow.url, timeout_seconds=0.3),
        )
    finally:
        slow.server.shutdown()
    assert "0 new alerts, 1 kept from earlier ticks; 1 not delivered" in late.skip_message
    delivered = tick(defs, "alert_sensor", instance, late.cursor, alerts=AlertWebhook(url=webhook.url))
    assert "0 not delivered" in delivered.skip_message
    (alert,) = webhook.received
    assert alert["kind"] == "run_failed" and "broken_asset" in alert["description"]
    assert len(alert["alert_id"]) == 16
    # delivered once: the next tick sends nothing again
    again = tick(defs, "alert_sensor", instance, delivered.cursor, alerts=AlertWebhook(url=webhook.url))
    assert len(webhook.received) == 1 and "no failed run or blocking check" in again.skip_message
