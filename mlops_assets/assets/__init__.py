"""Thin @asset wrappers over core/, one module per group."""

from __future__ import annotations

import dagster as dg

from mlops_assets.assets.anomalies import build_anomaly_assets
from mlops_assets.assets.catalog import build_catalog_assets
from mlops_assets.assets.catalog_monitoring import build_catalog_monitoring
from mlops_assets.assets.features import build_feature_assets
from mlops_assets.assets.forecasting import build_forecasting_assets
from mlops_assets.assets.ingestion import build_bronze_assets
from mlops_assets.assets.monitoring import build_monitoring_assets
from mlops_assets.assets.quality import build_quality_assets
from mlops_assets.assets.registry import build_registry_assets
from mlops_assets.assets.segmentation import build_segmentation_assets
from mlops_assets.assets.serving import build_serving_assets
from mlops_assets.settings import Settings


def build_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    return [
        *build_bronze_assets(settings),
        *build_quality_assets(settings),
        *build_feature_assets(settings),
        *build_forecasting_assets(settings),
        *build_catalog_assets(settings),
        *build_segmentation_assets(settings),
        *build_anomaly_assets(settings),
        *build_registry_assets(settings),
        *build_monitoring_assets(settings),
        *build_catalog_monitoring(settings),
        *build_serving_assets(settings),
    ]
