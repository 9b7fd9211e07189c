"""The retraining policy as Dagster runs it (issue 16): the automation conditions evaluated by
Dagster's own evaluator over a real instance, the automation sensor running by default, and
the training triggers (schedule and sensors) never starting a second training while one is
queued or running; the daily schedule leaves alone a day new_data_sensor already refreshed."""

import datetime as dt
import uuid
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.assets.registry import TRAINING_ASSETS
from mlops_assets.automation import sensors
from mlops_assets.automation.jobs import RETRAIN_REASON, training_under_way
from mlops_assets.definitions import build_definitions
from mlops_assets.settings import load_settings
from mlops_assets_tests.conftest import INGESTION, group_keys, run_graph

FOLLOWS_INGESTION = {
    "customer_features",
    "product_features",
    "customer_feature_snapshots",
    "product_feature_snapshots",
    "sales_series",
    "feature_drift_report",
}
TRAINED = {
    *TRAINING_ASSETS,
    "forecast_backtest_report",
    "segmentation_report",
    "sales_anomalies",
}


def requested(result) -> set[str]:
    return {r.key.to_user_string() for r in result.results if r.true_subset.size > 0}


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def test_conditions_follow_an_ingestion_and_never_start_a_training(small_data_dir, instance):
    defs = build_definitions(load_settings(small_data_dir))
    sensor = defs.resolve_sensor_def("automation_condition_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING

    fresh = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert fresh.total_requested == 0  # nothing starts itself on a fresh instance

    # an ingestion run that left everything downstream out (ingest_job's selection)
    ingested = run_graph(
        small_data_dir, "2023-01-01", "2023-03-31", instance, group_keys(small_data_dir, *INGESTION)
    )
    assert ingested.success
    after = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=fresh.cursor)
    got = requested(after)
    assert got >= FOLLOWS_INGESTION, FOLLOWS_INGESTION - got
    assert not got & TRAINED  # a data refresh retrains nothing
    # quarantine and the report were published with bronze: nothing to complete
    assert not got & {"quarantined_transactions", "data_quality_report"}
    # batch scores need a champion first: never requested before any training
    assert not got & {"sales_forecasts", "customer_segments", "model_cards"}
    # evaluated again with nothing new: nothing is requested twice
    again = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=after.cursor)
    assert again.total_requested == 0


def test_a_model_trained_alone_brings_its_batch_scores_with_it(small_data_dir, instance):
    defs = build_definitions(load_settings(small_data_dir))
    segmenter = dg.AssetSelection.assets("customer_segmenter").upstream().required_multi_asset_neighbors()
    segmenter = segmenter.resolve(defs.resolve_asset_graph())
    before = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert run_graph(small_data_dir, "2023-01-01", "2023-03-31", instance, list(segmenter)).success
    got = requested(dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=before.cursor))
    assert "customer_segments" in got  # the new segmenter's scores
    assert not got & TRAINED
    # the audit log waits for every model: the forecaster, detector and CLV were never trained
    assert "model_audit_log" not in got


def _run_in(instance, job: str, status: dg.DagsterRunStatus) -> str:
    """A run of `job` in `status`, as the instance's run storage holds it."""
    run = dg.DagsterRun(job_name=job, run_id=str(uuid.uuid4()), status=status)
    instance.add_run(run)
    return run.run_id


@pytest.mark.parametrize("job", ["train_models_job", "retrain_forecaster_job"])
def test_no_training_trigger_starts_a_second_training(small_data_dir, instance, monkeypatch, job):
    defs = build_definitions(load_settings(small_data_dir))
    sunday = dt.datetime(2026, 11, 22, 2, tzinfo=dt.UTC)
    weekly = defs.resolve_schedule_def("weekly_retrain_schedule")

    def weekly_tick():
        return weekly.evaluate_tick(
            dg.build_schedule_context(instance=instance, scheduled_execution_time=sunday)
        )

    _run_in(instance, job, dg.DagsterRunStatus.SUCCESS)  # finished runs do not count
    assert training_under_way(instance) is None
    (request,) = weekly_tick().run_requests
    assert request.tags[RETRAIN_REASON] == "schedule" and request.run_key == "weekly:2026-11-22"

    queued = _run_in(instance, job, dg.DagsterRunStatus.STARTED)
    assert training_under_way(instance).run_id == queued
    skipped = weekly_tick()
    assert not skipped.run_requests and queued in skipped.skip_message

    # the stale-model sensor, with a model 8 days old, waits for the queued run too
    instance.report_runless_asset_event(dg.AssetMaterialization("customer_segmenter"))
    trained = instance.get_latest_materialization_event(dg.AssetKey("customer_segmenter")).timestamp
    monkeypatch.setattr(sensors, "clock", lambda: trained + 8 * 86_400)
    sensor = defs.resolve_sensor_def("stale_model_sensor")
    result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    assert not result.run_requests and queued in result.skip_message


def test_the_daily_schedule_skips_a_day_the_new_data_sensor_already_refreshed(small_data_dir, instance):
    defs = build_definitions(load_settings(small_data_dir))
    daily = defs.resolve_schedule_def("daily_monitoring_schedule")
    at = dt.datetime(2023, 2, 10, 1, tzinfo=dt.UTC)  # for 9 February, partition 2023-02

    def daily_tick():
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=at, repository_def=defs.get_repository_def()
        )
        return daily.evaluate_tick(context)

    (request,) = daily_tick().run_requests
    assert request.partition_key == "2023-02"
    ingest = group_keys(small_data_dir, *INGESTION)
    assert run_graph(small_data_dir, "2023-02-01", "2023-02-28", instance, ingest).success
    skipped = daily_tick()  # the month was ingested after 9 February ended
    assert not skipped.run_requests and "already ingested and monitored" in skipped.skip_message
    # another month's day is still requested
    at = dt.datetime(2023, 3, 10, 1, tzinfo=dt.UTC)
    (request,) = daily_tick().run_requests
    assert request.partition_key == "2023-03"


def test_the_shipped_instance_config_loads_with_its_policy(tmp_path):
    """.dagster_home/dagster.yaml, the instance of the README's commands: it loads, telemetry is
    off, freshness is on, and one training run at a time."""
    shipped = Path(__file__).resolve().parent.parent / ".dagster_home" / "dagster.yaml"
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(shipped.read_text())
    with dg.DagsterInstance.from_config(str(home)) as inst:
        assert inst.get_settings("telemetry") == {"enabled": False}
        assert inst.get_settings("freshness") == {"enabled": True}
        limits = inst.run_coordinator.get_run_queue_config().tag_concurrency_limits
        assert {"key": RETRAIN_REASON, "limit": 1} in limits
    for job in ("train_models_job", "retrain_forecaster_job"):  # the tag the limit counts
        assert RETRAIN_REASON in build_definitions(load_settings(None)).resolve_job_def(job).run_tags
