"""Monitoring of the catalog forecaster: the forecasts its champions issued (kept under
forecasts/catalog_issued/ by catalog_forecasts) scored on the actuals that arrive, every level."""

import time

import dagster as dg
import numpy as np
import pandas as pd

from mlops_assets.assets._metadata import table_metadata
from mlops_assets.assets.partitions import SINGLE_RUN
from mlops_assets.automation.jobs import AFTER_GATES
from mlops_assets.core import forecast_performance as fp
from mlops_assets.core.hierarchy import hierarchy_of
from mlops_assets.core.series import SEASON
from mlops_assets.settings import Settings

ACCURACY = dg.AssetCheckSpec(
    "catalog_accuracy_within_tolerance",
    asset="catalog_forecast_performance",
    description="Median over series of rolling MASE / holdout MASE is at most "
    "1 + monitoring.max_mase_degradation.",
)


def build_catalog_monitoring(settings: Settings) -> list[dg.AssetsDefinition]:
    if not settings.forecast.catalog:
        return []
    f = settings.forecast
    m = settings.monitoring

    @dg.asset(
        group_name="monitoring",
        kinds={"pandas", "duckdb"},
        metadata={"schema": "monitoring"},
        backfill_policy=SINGLE_RUN,
        automation_condition=AFTER_GATES,
        check_specs=[ACCURACY],
        deps=["catalog_forecasts"],
    )
    def catalog_forecast_performance(context: dg.AssetExecutionContext, catalog_series: pd.DataFrame):
        """The catalog forecasts issued by each champion (forecasts/catalog_issued/) scored on the
        actuals that arrived since, every level: per series over the last
        monitoring.performance_window periods, MASE against the holdout MASE it was issued
        with, MAPE, bias and 80/95% coverage."""
        started = time.perf_counter()
        files = sorted(settings.catalog_issued_dir.glob("*.parquet"))
        archive = pd.concat(map(pd.read_parquet, files), ignore_index=True) if files else pd.DataFrame()
        actuals = actuals_of(catalog_series, f.freq, archive)
        table = fp.score(archive, actuals, SEASON[f.freq], m.performance_window, m.max_mase_degradation)
        bad, median, text = fp.degradation(table, m.max_mase_degradation)
        (context.log.error if bad else context.log.info)(text)
        meta = {
            "degraded": bad,
            "reason": text,
            "issued_files": len(files),
            "series_scored": len(table),
            "series_degraded": int(table["degraded"].sum()) if len(table) else 0,
            "seconds": time.perf_counter() - started,
            "performance": table_metadata(table.round(3), 50),
        }
        if np.isfinite(median):
            meta |= {"median_mase_ratio": median, "mean_mase": float(table["mase"].mean()),
                     "coverage80": float(table["coverage80"].mean()),
                     "coverage95": float(table["coverage95"].mean())}  # fmt: skip
        yield dg.Output(table, metadata=meta)
        yield dg.AssetCheckResult(
            check_name=ACCURACY.name,
            asset_key=ACCURACY.asset_key,
            passed=not bad,
            description=text,
            metadata={"median_mase_ratio": median if np.isfinite(median) else -1.0},
        )

    return [catalog_forecast_performance]


def actuals_of(bottom: pd.DataFrame, freq: str, archive: pd.DataFrame) -> pd.DataFrame:
    """Every level's actuals (series_id, period, revenue) of the series the archive forecast."""
    if bottom.empty or archive.empty:
        return pd.DataFrame(columns=["series_id", "period", "revenue"])
    h = hierarchy_of(bottom, freq)
    # a hash lookup: np.isin on the string ids sorted them, 13.6 s of 19 s on 12,000 series
    keep = np.flatnonzero(pd.Index(h.ids).isin(archive["series_id"].unique()))
    frame = h.long(keep).rename(columns={"unique_id": "series_id", "ds": "period", "y": "revenue"})
    return frame
