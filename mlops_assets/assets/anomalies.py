"""Anomalies: days whose sales deviate from what the weekly and yearly profile, holidays and
the current level explain by more than the series' ordinary noise (core/anomalies.py)."""

import dagster as dg
import pandas as pd

from mlops_assets.assets._governance import TRACKED, govern
from mlops_assets.assets._metadata import frame_metadata, model_selected, only_selected, table_metadata
from mlops_assets.assets.partitions import SINGLE_RUN
from mlops_assets.automation.freshness import model_freshness
from mlops_assets.automation.jobs import TRAINING_CONDITION
from mlops_assets.core.anomalies import AnomalySpec, detect
from mlops_assets.core.plots import anomalies_md, png_of
from mlops_assets.core.promotion import Decision
from mlops_assets.settings import Settings

GROUP = "anomalies"
PLOTS = 3  # series plotted: total first, then those with the most anomalies


def spec(settings: Settings) -> AnomalySpec:
    a = settings.anomaly
    return AnomalySpec(
        freq=settings.forecast.freq,
        country=settings.forecast.country,
        holiday_window=tuple(a.holiday_window),
        min_abs_z=a.min_abs_z,
        min_log_deviation=a.min_log_deviation,
        level_window=a.level_window,
        noise_window=a.noise_window,
        seed=a.seed,
    )


def build_anomaly_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    @dg.multi_asset(
        outs={
            "sales_anomaly_detector": dg.AssetOut(
                group_name=GROUP,
                kinds={"sklearn"},
                io_manager_key="model_io_manager",
                description="Isolation forests (one per level) over residual z and day of week, with "
                "the settings of the residual model, under models/sales_anomaly_detector/.",
                automation_condition=TRAINING_CONDITION,
                freshness_policy=model_freshness(settings),
            ),
            "sales_anomalies": dg.AssetOut(
                group_name=GROUP,
                kinds={"pandas", "duckdb"},
                metadata={"schema": GROUP},
                description="Anomalous periods per series: revenue, expected revenue, robust residual z, "
                "isolation-forest score (higher = more anomalous) and direction (spike / drop).",
                automation_condition=TRAINING_CONDITION,
            ),
        },
        can_subset=True,
        backfill_policy=SINGLE_RUN,
        code_version="1",
        **TRACKED,
    )
    def detect_sales_anomalies(context: dg.AssetExecutionContext, sales_series: pd.DataFrame):
        detector, scored = detect(sales_series, spec(settings))
        table = scored[scored["is_anomaly"]].drop(columns=["is_anomaly"])
        table = table.sort_values(["series_id", "period"], ignore_index=True)
        per_series = table.groupby("series_id").size()
        counts = per_series.rename("anomalies").reset_index()
        counts["direction"] = (
            table.groupby("series_id")["direction"].agg(lambda d: d.value_counts().to_dict()).values
        )
        ranked = ["total"] * ("total" in set(scored["series_id"]))
        ranked += [sid for sid in per_series.sort_values(ascending=False).index if sid != "total"]
        plots = {f"plot_{sid}": dg.MetadataValue.md(anomalies_md(scored, sid)) for sid in ranked[:PLOTS]}
        share = float(len(table) / max(len(scored), 1))
        trained = model_selected(context, "sales_anomaly_detector")
        governance = (
            {}
            if not trained
            else govern(
                context,
                "sales_anomaly_detector",
                detector,
                # no gate or comparison is defined for detectors: the newest one is the champion
                lambda champion: Decision(True, "anomaly detectors are not compared: the newest is champion"),
                params={**spec(settings).__dict__, "levels": list(detector.forests)},
                metrics={"anomalies": len(table), "anomaly_share": share},
                data=sales_series,
                example=scored[["series_id", "level", "period", "revenue", "expected", "residual", "z"]].head(
                    5
                ),
                artifacts={
                    "sales_anomalies.csv": table,
                    **{f"{k}.png": png_of(v.value) for k, v in plots.items()},
                },
            )
        )
        yield from only_selected(
            context, _published(detector, scored, table, counts, share, plots, governance)
        )

    return [detect_sales_anomalies]


def _published(detector, scored, table, counts, share, plots, governance):
    """The detector and the anomalies it found, as outputs."""
    yield dg.Output(
        detector,
        output_name="sales_anomaly_detector",
        metadata={"levels": ", ".join(detector.forests), "periods_scored": len(scored), **governance},
    )
    yield dg.Output(
        table,
        output_name="sales_anomalies",
        metadata={
            "anomalies": len(table),
            "anomaly_share": share,
            "per_series": table_metadata(counts.astype(str), 50),
            **frame_metadata(table.round(3), 20),
            **plots,
        },
    )
