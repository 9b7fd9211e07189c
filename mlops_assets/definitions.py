"""The one Definitions object of the code location."""

from __future__ import annotations

import dagster as dg

from mlops_assets.assets import build_assets
from mlops_assets.automation.jobs import ingest_job
from mlops_assets.resources import ModelIOManager, WarehouseIOManager
from mlops_assets.settings import Settings, load_settings


def build_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=build_assets(settings),
        jobs=[ingest_job],
        resources={
            "io_manager": WarehouseIOManager(database=str(settings.warehouse_path)),
            "model_io_manager": ModelIOManager(directory=str(settings.models_dir)),
        },
    )


defs = build_definitions(load_settings())
