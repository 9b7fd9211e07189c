"""The one Definitions object of the code location."""

from __future__ import annotations

import os

# skops (MLflow's scikit-learn format) scans every loaded module for each of ~340 scipy ufuncs
# when first imported: imported here, before dagster and mlflow load ~3,000 more modules, that
# costs 0.1 s instead of 2.5 s in every run that saves a scikit-learn model (bench_build.py)
import skops.io  # noqa: F401  isort: skip

import dagster as dg

from mlops_assets.assets import build_assets
from mlops_assets.automation.jobs import (
    ingest_job,
    promote_challenger_job,
    refresh_and_monitor_job,
    rescore_after_rollback,
    rescore_job,
    retrain_forecaster_job,
    rollback_model_job,
    train_models_job,
)
from mlops_assets.automation.schedules import build_schedules
from mlops_assets.automation.sensors import build_sensors
from mlops_assets.resources import RegistryModelIOManager, warehouse_io_manager
from mlops_assets.resources.alerts import WEBHOOK_ENV, AlertWebhook
from mlops_assets.resources.registry import ModelRegistry
from mlops_assets.resources.tracking import (
    DEFAULT_UI,
    TRACKING_ENV,
    UI_ENV,
    MlflowTracking,
    artifact_root,
    tracking_uri,
)
from mlops_assets.settings import Settings, load_settings


def registry_resource(settings: Settings) -> ModelRegistry:
    return ModelRegistry.of_data_dir(
        settings.data_dir,
        # a shared tracking server from the environment, else the local SQLite store
        dg.EnvVar(TRACKING_ENV) if os.environ.get(TRACKING_ENV) else tracking_uri(settings),
    )


def resources(settings: Settings) -> dict:
    registry = registry_resource(settings)
    return {
        "io_manager": warehouse_io_manager(settings.warehouse_path, settings.warehouse),
        # models move through the registry: no second copy on disk (resources/models.py)
        "model_io_manager": RegistryModelIOManager(registry=registry),
        # the catalog backtest's steps hand the hierarchy and their chunks' forecasts to each
        # other through files, so that any executor can run them in other processes
        "catalog_io_manager": dg.FilesystemIOManager(base_dir=str(settings.catalog_steps_dir)),
        "mlflow": MlflowTracking(
            tracking_uri=dg.EnvVar(TRACKING_ENV) if os.environ.get(TRACKING_ENV) else tracking_uri(settings),
            artifact_location=artifact_root(settings),
            ui_url=dg.EnvVar(UI_ENV) if os.environ.get(UI_ENV) else DEFAULT_UI,
        ),
        "registry": registry,
        # alerts go to the log; and to the webhook when its URL is in the environment
        "alerts": AlertWebhook(url=dg.EnvVar(WEBHOOK_ENV)) if os.environ.get(WEBHOOK_ENV) else AlertWebhook(),
    }


# Dagster's default automation sensor starts stopped on a fresh instance, so no condition would
# ever be evaluated: this one replaces it and runs by default (the policy: automation/jobs.py)
automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation_condition_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Evaluates the assets' automation conditions: what follows an ingestion or a training "
    "run that left it out (features, sales series, monitoring, batch scores, cards). Never starts a "
    "training.",
)

# sources.yaml `executor`: see settings.py
EXECUTORS = {"in_process": dg.in_process_executor, "multiprocess": dg.multiprocess_executor}


def executor_of(settings: Settings) -> dg.ExecutorDefinition:
    if settings.executor != "celery":
        return EXECUTORS[settings.executor]
    from dagster_celery import celery_executor  # the production profile's extra (deploy/cluster)

    return celery_executor.configured(
        {
            "broker": {"env": "MLOPS_CELERY_BROKER"},
            "backend": {"env": "MLOPS_CELERY_BACKEND"},
            # a step whose worker dies goes back to the queue for another worker
            "config_source": {"task_acks_late": True, "task_reject_on_worker_lost": True},
        }
    )


def build_definitions(settings: Settings) -> dg.Definitions:
    assets = build_assets(settings)
    check_keys = sorted({k for a in assets for k in a.check_keys}, key=lambda k: k.to_user_string())
    return dg.Definitions(
        assets=assets,
        jobs=[
            ingest_job,
            refresh_and_monitor_job,
            train_models_job,
            retrain_forecaster_job,
            rescore_job,
            rollback_model_job,
            promote_challenger_job,
        ],
        schedules=build_schedules(settings),
        sensors=[rescore_after_rollback, automation_sensor, *build_sensors(settings, check_keys)],
        resources=resources(settings),
        executor=executor_of(settings),
    )


defs = build_definitions(load_settings())
