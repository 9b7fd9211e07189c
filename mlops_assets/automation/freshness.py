"""Freshness policies the UI shows on the source-facing assets and on every model. They are
what a person watches; the retraining of a stale model is decided by stale_model_sensor from
the same setting, because the freshness daemon's state is not visible to tests."""

import datetime as dt

import dagster as dg

from mlops_assets.settings import Settings


def model_freshness(settings: Settings) -> dg.FreshnessPolicy:
    """A model is stale monitoring.model_max_age_days after its last training (warn at 80%)."""
    days = settings.monitoring.model_max_age_days
    return dg.FreshnessPolicy.time_window(
        fail_window=dt.timedelta(days=days), warn_window=dt.timedelta(days=0.8 * days)
    )


def source_freshness(settings: Settings) -> dg.FreshnessPolicy:
    """Sources are stale monitoring.source_max_age_hours after their last ingestion (warn at half)."""
    hours = settings.monitoring.source_max_age_hours
    return dg.FreshnessPolicy.time_window(
        fail_window=dt.timedelta(hours=hours), warn_window=dt.timedelta(hours=hours / 2)
    )
