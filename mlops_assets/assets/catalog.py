"""Catalog-scale forecasting (forecast.levels with product or product_store): every product in
every store and every level above it, backtested in chunks that the executor spreads over
processes, reconciled into coherent forecasts, registered as one MLflow version with the
champion/challenger test, and scored on arriving actuals.

    catalog_series ─► catalog_base_forecasts ─────────────► catalog_forecaster ─► catalog_forecasts
                      (graph: split_catalog ─► backtest_chunk   (reconcile, gates,      │
                       × N chunks ─► join_chunks)               register)               ▼
                                                                          catalog_forecast_performance
                                                                          (assets/catalog_monitoring.py)
"""

import os
import time
from dataclasses import replace

import dagster as dg
import numpy as np
import pandas as pd

from mlops_assets.assets._governance import TRACKED, champion_output, first_or, govern, not_registered
from mlops_assets.assets._lines import SILVER_IN, silver_lines
from mlops_assets.assets._metadata import frame_metadata, model_selected, only_selected, table_metadata
from mlops_assets.assets.features import feature_as_of
from mlops_assets.assets.forecasting import SERIES_ASSET, archive_issued
from mlops_assets.assets.partitions import SINGLE_RUN
from mlops_assets.automation.freshness import model_freshness
from mlops_assets.automation.jobs import TRAINING_CONDITION
from mlops_assets.checks.catalog import GATES, beats_naive_result, coherence_result, coverage_result
from mlops_assets.checks.gates import blocks
from mlops_assets.core import catalog, schemas
from mlops_assets.core import series as series_core
from mlops_assets.core.catalog_median import median_forecasts
from mlops_assets.core.catalog_model import CatalogForecaster, compare
from mlops_assets.core.hierarchy import Hierarchy, hierarchy_of
from mlops_assets.core.reconciliation import reconcile
from mlops_assets.resources.models import Champion
from mlops_assets.settings import Settings

GROUP = "forecasting"
MODEL = "catalog_forecaster"
STEPS_IO = "catalog_io_manager"


def plan_of(settings: Settings) -> catalog.CatalogPlan:
    f = settings.forecast
    return catalog.CatalogPlan(
        horizon=f.horizon,
        folds=f.folds,
        season=series_core.SEASON[f.freq],
        workers=f.workers,
        intermittent_share=f.intermittent_share,
    )


def build_catalog_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    if not settings.forecast.catalog:
        return []
    f = settings.forecast
    plan = plan_of(settings)
    # a chunk's step fits its series in one process: the executor spreads the chunks. A process
    # pool inside a step was slow under the multiprocess executor (each worker re-imported the
    # code location: 197 series in 53 s instead of 1.3 s) and hung after a fork in a test worker
    chunk_plan = replace(plan, workers=1)

    @dg.asset(**SERIES_ASSET, ins=SILVER_IN)
    def catalog_series(bronze_products: pd.DataFrame) -> dg.Output:
        """The catalog's bottom series: net revenue per product, store and complete period
        (forecast.freq), with the product's category; periods without lines are zeros. Summed in
        the engine (DuckDB, out of core): one row per series and period comes into the step."""
        products = bronze_products if len(bronze_products) else None
        with silver_lines(settings) as lines:
            end = feature_as_of(lines, settings)
            week_ends, _, weeks = series_core.week_ends_of(lines, f.freq, f.week_ends)
            table, notes = series_core.bottom_series(lines, products, f.freq, end, week_ends)
        if f.freq == "W":
            notes.insert(0, weeks)
        pairs = table[["product_id", "store_id"]].drop_duplicates() if len(table) else table
        return dg.Output(
            table,
            metadata={
                "rows": len(table),
                "product_store_series": len(pairs),
                "products": int(table["product_id"].nunique()) if len(table) else 0,
                "stores": int(table["store_id"].nunique()) if len(table) else 0,
                "first_period": str(table["period"].min()) if len(table) else "none",
                "last_period": str(table["period"].max()) if len(table) else "none",
                "notes": "\n".join(notes) or "none",
                **frame_metadata(table),
            },
        )

    @dg.op(
        out={"hierarchy": dg.Out(io_manager_key=STEPS_IO), "chunks": dg.DynamicOut(io_manager_key=STEPS_IO)}
    )
    def split_catalog(context, catalog_series: pd.DataFrame):
        """Every level's series as one matrix, and the series split into chunks: one step each."""
        if catalog_series.empty:
            raise ValueError("catalog_series is empty: no lines in complete periods to forecast")
        h = hierarchy_of(catalog_series, f.freq)
        if len(h.periods) < plan.min_length:
            raise ValueError(
                f"catalog_series has {len(h.periods)} periods "
                f"({h.periods[0].date()} to {h.periods[-1].date()}); "
                f"the catalog backtest needs at least {plan.min_length} (forecast.folds {plan.folds} x "
                f"forecast.horizon {plan.horizon}, and four seasons to fit on): load more history, or take "
                "product and product_store out of forecast.levels"
            )
        parts = catalog.chunks(len(h.ids), f.chunk_series, f.workers)
        context.log.info(f"{len(h.ids)} series over {len(h.periods)} periods in {len(parts)} chunks")
        yield dg.Output(h, "hierarchy", metadata={"series": len(h.ids), "periods": len(h.periods)})
        for i, rows in enumerate(parts):
            yield dg.DynamicOutput(rows, output_name="chunks", mapping_key=f"chunk_{i}")

    @dg.op(out=dg.Out(io_manager_key=STEPS_IO))
    def backtest_chunk(context, hierarchy: Hierarchy, rows: np.ndarray) -> dg.Output:
        """Backtest, choose and forecast one chunk of series (core/catalog.py)."""
        started = time.perf_counter()
        result = catalog.backtest_rows(hierarchy, rows, chunk_plan, f.freq)
        seconds = time.perf_counter() - started
        context.log.info(f"{len(rows)} series in {seconds:.1f} s (process {os.getpid()})")
        kinds = pd.Series(result.kinds).value_counts().to_dict()
        return dg.Output(
            result,
            metadata={
                "series": len(rows),
                "seconds": seconds,
                "pid": os.getpid(),
                **{k: int(v) for k, v in kinds.items()},
            },
        )

    @dg.op(out=dg.Out(io_manager_key=STEPS_IO))
    def fit_median_model(context, hierarchy: Hierarchy) -> dg.Output:
        """The global median model over every product-store series (core/catalog_median.py):
        fitted at the last selection fold's origin, the holdout's, and on every period. Its own
        step, beside the chunks: the executor runs it while they backtest."""
        if not f.median_model:
            return dg.Output(None, metadata={"median_model": "off (forecast.median_model)"})
        result = median_forecasts(hierarchy, plan, f.freq)
        context.log.info(f"median model: {hierarchy.n_bottom} series, 3 fits in {result.seconds:.1f} s")
        return dg.Output(result, metadata={"series": hierarchy.n_bottom, "seconds": result.seconds})

    @dg.op(out=dg.Out(io_manager_key=STEPS_IO))
    def join_chunks(hierarchy: Hierarchy, parts: list, median) -> dg.Output:
        joined = catalog.join(parts, len(hierarchy.ids))
        kinds = pd.Series(joined.kinds).value_counts().to_dict()
        return dg.Output(
            {"hierarchy": hierarchy, "base": joined, "median": median},
            metadata={
                "series": len(hierarchy.ids),
                "chunks": len(parts),
                "median_model": median is not None,
                **{k: int(v) for k, v in kinds.items()},
            },
        )

    @dg.graph_asset(
        group_name=GROUP,
        kinds={"statsforecast", "lightgbm"},
        automation_condition=TRAINING_CONDITION,
        backfill_policy=SINGLE_RUN,
        code_version="1",
        description="Base forecasts of every catalog series: per series its demand class, the model "
        "chosen on the selection folds and its fold and final forecasts, computed in chunks of "
        "forecast.chunk_series series (one step each: the executor runs them in parallel).",
    )
    def catalog_base_forecasts(catalog_series: pd.DataFrame):
        hierarchy, chunks = split_catalog(catalog_series)
        parts = chunks.map(lambda rows: backtest_chunk(hierarchy, rows))
        return join_chunks(hierarchy, parts.collect(), fit_median_model(hierarchy))

    def _table(description: str) -> dg.AssetOut:
        return dg.AssetOut(
            group_name=GROUP,
            kinds={"pandas", "duckdb"},
            is_required=False,
            metadata={"schema": GROUP},
            description=description,
            automation_condition=TRAINING_CONDITION,
        )

    @dg.multi_asset(
        outs={
            MODEL: dg.AssetOut(
                group_name=GROUP,
                kinds={"hierarchicalforecast", "mlflow"},
                io_manager_key="model_io_manager",
                is_required=False,
                description="The catalog forecaster: coherent forecasts of every level with 80% / 95% "
                "bands, the reconciliation chosen by backtest and the choices behind them, as a "
                "registered MLflow version (downstream assets load the champion).",
                automation_condition=TRAINING_CONDITION,
                freshness_policy=model_freshness(settings),
            ),
            "catalog_choices": _table(
                "Per series: level, demand class, chosen model, selection-fold MASE and the reconciled "
                "forecast's holdout MASE (absolute and relative to seasonal naive)."
            ),
            "catalog_reconciliation": _table(
                "Reconciliation method x level: geometric-mean MASE (absolute and relative to seasonal "
                "naive) on the selection folds, which choose the method, and on the holdout fold."
            ),
        },
        check_specs=[g.spec for g in GATES.values()],
        backfill_policy=SINGLE_RUN,
        can_subset=True,
        code_version="1",
        **TRACKED,
    )
    def train_catalog_forecaster(context: dg.AssetExecutionContext, catalog_base_forecasts: dict):
        h, base = catalog_base_forecasts["hierarchy"], catalog_base_forecasts["base"]
        result = reconcile(h, base, plan, catalog_base_forecasts.get("median"))
        model = CatalogForecaster.of(result)
        m = result.metrics
        checks = [
            beats_naive_result(m, f.max_relative_mase),
            coherence_result(h, result.forecasts),
            GATES["sane"].validate(
                schemas.catalog_forecast_schema(), result.forecasts, "the catalog forecasts"
            ),
            coverage_result(m, f.coverage_tolerance),
        ]
        failed = [c for c in checks if blocks(c)]
        for c in checks:
            if not c.passed:
                context.log.error(c.description)
        floats = {k: float(v) for k, v in m.items() if np.isfinite(v)}
        meta = {
            "reconciliation": result.method,
            "series": len(h.ids),
            **{f"series_{lv}": int((h.levels == lv).sum()) for lv in dict.fromkeys(h.levels)},
            "notes": "\n".join(result.notes) or "none",
            **floats,
        }
        if failed:
            if model_selected(context, MODEL):
                not_registered(context, MODEL, failed)
        else:
            if model_selected(context, MODEL):
                governance = govern(
                    context,
                    MODEL,
                    model,
                    first_or(
                        lambda v: compare(
                            context.resources.registry.load(MODEL, version=v.version)[0],
                            model,
                            settings.registry.alpha,
                        )
                    ),  # fmt: skip
                    params={**plan.__dict__, "reconciliation": result.method, "series": len(h.ids)},
                    metrics=floats,
                    data=result.choices,
                    example=result.forecasts[["series_id"]].drop_duplicates().head(5),
                    artifacts={"choices.csv": result.choices, "reconciliation.csv": result.reconciliation},
                )
                yield dg.Output(model, output_name=MODEL, metadata={**meta, **governance})
            kinds = (
                result.choices.groupby(["level", "kind", "chosen_model"])
                .size()
                .rename("series")
                .reset_index()
            )
            yield from only_selected(context, [
                dg.Output(result.choices, output_name="catalog_choices",
                          metadata={**meta, "choices": table_metadata(kinds, 60)}),
                dg.Output(result.reconciliation, output_name="catalog_reconciliation",
                          metadata={**meta, "table": table_metadata(result.reconciliation.round(3), 30)}),
            ])  # fmt: skip
        yield from only_selected(context, checks)

    @dg.asset(**champion_output(GROUP))
    def catalog_forecasts(catalog_forecaster: Champion) -> dg.Output:
        """Next forecast.horizon periods of every catalog series (every level, coherent: the
        product-store rows sum to each level above) from the registry's champion."""
        champion, version = catalog_forecaster.model, catalog_forecaster.number
        table = champion.forecasts.assign(
            model_version=pd.Series(version, index=champion.forecasts.index, dtype="string")
        )
        archived = archive_issued(champion, version, settings, settings.catalog_issued_dir)
        by_level = table.groupby("level")["series_id"].nunique().to_dict()
        return dg.Output(
            table,
            metadata={
                "rows": len(table),
                "reconciliation": champion.method,
                "point_from_median_series": int(
                    table.loc[table["point_source"] == "median", "series_id"].nunique()
                ),
                "issued_file": str(archived),
                "model_version": version,
                "model_uri": catalog_forecaster.uri,
                "model_trained_at": champion.trained_at,
                **{f"series_{k}": int(v) for k, v in by_level.items()},
                "preview": table_metadata(table.head(10)),
            },
        )

    return [catalog_series, catalog_base_forecasts, train_catalog_forecaster, catalog_forecasts]
