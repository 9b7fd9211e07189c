"""Schedules: a daily ingestion-and-monitoring run for the day that just ended (unless
new_data_sensor already refreshed it), and the weekly retraining of every model on Sunday at
02:00 (UTC) (unless a training run is already under way)."""

import dagster as dg
import pandas as pd

from mlops_assets.assets.partitions import partition_key, window_of
from mlops_assets.assets.transactions import SILVER
from mlops_assets.automation.jobs import (
    RETRAIN_REASON,
    refresh_and_monitor_job,
    train_models_job,
    training_under_way,
)
from mlops_assets.settings import Settings


@dg.schedule(
    job=train_models_job,
    cron_schedule="0 2 * * 0",  # Sunday 02:00
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def weekly_retrain_schedule(context: dg.ScheduleEvaluationContext):
    """Retrain every model weekly; each is promoted only through its gates and comparison. A
    training run already queued or running (started by drift, say) makes this week's skip."""
    run = training_under_way(context.instance)
    if run is not None:
        return dg.SkipReason(f"{run.job_name} run {run.run_id} is already under way: it retrains the models")
    week = pd.Timestamp(context.scheduled_execution_time).date()
    return dg.RunRequest(run_key=f"weekly:{week}", tags={RETRAIN_REASON: "schedule"})


def build_daily_monitoring_schedule(settings: Settings) -> dg.ScheduleDefinition:
    window = window_of(settings)

    @dg.schedule(
        job=refresh_and_monitor_job,
        cron_schedule="0 1 * * *",  # 01:00, after the day's files have landed
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def daily_monitoring_schedule(context: dg.ScheduleEvaluationContext):
        """Every day at 01:00, ingestion and monitoring for the day that just ended: a run of the
        monthly partition that holds it (the month so far is re-split; a month of lines takes
        milliseconds). After a closed window's last day there is nothing new to ingest."""
        day = pd.Timestamp(context.scheduled_execution_time).tz_convert(None).floor("D") - pd.Timedelta(
            days=1
        )
        if window.end is not None and day.date() > window.end:
            return dg.SkipReason(
                f"{day.date()} is after the window's end_date {window.end}: nothing to ingest"
            )
        if day.date() < window.start:
            return dg.SkipReason(f"{day.date()} is before the window's start_date {window.start}")
        key = partition_key(day)
        done = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(SILVER), asset_partitions=[key]), limit=1
        ).records
        ended = (day + pd.Timedelta(days=1)).tz_localize("UTC").timestamp()
        if done and done[0].timestamp >= ended:
            when = pd.Timestamp(done[0].timestamp, unit="s", tz="UTC").isoformat(timespec="seconds")
            return dg.SkipReason(
                f"{day.date()} was already ingested and monitored after it ended (run {done[0].run_id} "
                f"at {when}, started by new_data_sensor or by hand)"
            )
        return dg.RunRequest(run_key=f"day:{day.date()}", partition_key=key)

    return daily_monitoring_schedule


def build_schedules(settings: Settings) -> list[dg.ScheduleDefinition]:
    return [weekly_retrain_schedule, build_daily_monitoring_schedule(settings)]
