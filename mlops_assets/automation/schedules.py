"""Schedules: a daily ingestion-and-monitoring run for the day that just ended, and the weekly
retraining of every model on Sunday at 02:00 (UTC)."""

import dagster as dg

from mlops_assets.automation.jobs import RETRAIN_REASON, refresh_and_monitor_job, train_models_job

weekly_retrain_schedule = dg.ScheduleDefinition(
    name="weekly_retrain_schedule",
    job=train_models_job,
    cron_schedule="0 2 * * 0",  # Sunday 02:00
    execution_timezone="UTC",
    tags={RETRAIN_REASON: "schedule"},
    description="Retrain every model weekly; each is promoted only through its gates and comparison.",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

# the partition of the day that just ended, at 01:00 (after the day's files have landed)
daily_monitoring_schedule = dg.build_schedule_from_partitioned_job(
    refresh_and_monitor_job,
    name="daily_monitoring_schedule",
    hour_of_day=1,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

SCHEDULES = [weekly_retrain_schedule, daily_monitoring_schedule]
