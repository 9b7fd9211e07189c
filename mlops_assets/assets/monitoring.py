"""Monitoring: drift of the current data against what the champions were trained on, and the
champion forecaster's accuracy on actuals that arrived after it forecast. The sensors in
automation/ read these assets' metadata to start retraining."""

import json
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from mlops_assets.assets._lines import SILVER_IN, silver_lines
from mlops_assets.assets._metadata import table_metadata
from mlops_assets.assets.features import feature_as_of
from mlops_assets.assets.partitions import SINGLE_RUN
from mlops_assets.automation.jobs import AFTER_GATES, AFTER_GATES_ANY_CHAMPION
from mlops_assets.core import forecast_performance as fp
from mlops_assets.core import monitoring
from mlops_assets.core.drift import (
    MIN_CLASSIFIER_ROWS,
    ClassifierDrift,
    DriftSettings,
    classifier_drift,
    drift_report,
)
from mlops_assets.core.plots import drift_md, performance_md
from mlops_assets.core.series import SEASON
from mlops_assets.resources.models import OPTIONAL_KEY, Champion
from mlops_assets.settings import MonitoringSettings, Settings

GROUP = "monitoring"
DRIFT_LEVEL = "drift_level"  # metadata keys the sensors read
DEGRADED = "degraded"
NO_DRIFT = dg.AssetCheckSpec(
    "no_significant_drift",
    asset="feature_drift_report",
    description="Warns on moderate drift (a column drifts by its test, or PSI >= psi_moderate); "
    "fails on significant drift (a dataset drifts, or PSI >= psi_significant).",
)
ACCURACY = dg.AssetCheckSpec(
    "forecast_accuracy_within_tolerance",
    asset="forecast_performance",
    description="Median over series of rolling MASE / backtest MASE is at most "
    "1 + monitoring.max_mase_degradation.",
)


# the training snapshot each dataset's drift is measured against: the model that stored it
SNAPSHOTS = {
    "transactions": "sales_forecaster",
    "product_features": "sales_forecaster",
    "customer_features": "customer_segmenter",
}
# the champions as inputs (RegistryModelIOManager); before the first one: None, and a note
CHAMPION_INS = {m: dg.AssetIn(metadata={OPTIONAL_KEY: True}) for m in sorted(set(SNAPSHOTS.values()))}


def drift_settings(m: MonitoringSettings) -> DriftSettings:
    """The core's drift thresholds, each read from the setting of the same name."""
    return DriftSettings(**{f.name: getattr(m, f.name) for f in fields(DriftSettings)})


def _part(dataset: str, model: str, version, reference, current, s: DriftSettings) -> pd.DataFrame:
    report = drift_report(reference, current, s)
    return report.assign(dataset=dataset, reference_model=model, reference_version=str(version))


def drift_tables(
    champions: dict[str, Champion | None],
    current: dict[str, pd.DataFrame],
    customer_features: pd.DataFrame,
    s: DriftSettings,
    classifier_threshold: float | None = None,
) -> tuple[pd.DataFrame, list[str], dict[str, ClassifierDrift]]:
    """One drift table over every dataset a champion (by model name; None before the first)
    stored a snapshot of, plus the segment shares of the champion segmenter then and now; notes
    for what could not be compared; and, with a classifier threshold, each dataset's
    domain-classifier result."""
    parts, notes, classifier = [], [], {}
    for dataset, model in SNAPSHOTS.items():
        champion = champions.get(model)
        reference = champion.reference(dataset) if champion is not None else None
        if reference is None:
            notes.append(f"{dataset}: no champion {model} with a training snapshot yet")
            continue
        if current[dataset].empty:
            notes.append(f"{dataset}: no current rows")
            continue
        parts.append(_part(dataset, model, champion.number, reference, current[dataset], s))
        rows = min(len(reference), len(current[dataset]))
        if classifier_threshold is not None and rows < MIN_CLASSIFIER_ROWS:
            notes.append(f"{dataset}: {rows} rows on a side, too few for the domain classifier "
                         f"(at least {MIN_CLASSIFIER_ROWS})")  # fmt: skip
        elif classifier_threshold is not None:
            classifier[dataset] = classifier_drift(reference, current[dataset], classifier_threshold)
    segmenter = champions.get("customer_segmenter")
    if segmenter is not None and len(customer_features):
        then = segmenter.model.profile.set_index("segment_id")["share"]
        now = segmenter.model.assign(customer_features)["segment_id"].value_counts(normalize=True)
        row = monitoring.segment_shift(then, now, s)
        parts.append(
            pd.DataFrame([row]).assign(
                dataset="segments",
                psi_level=monitoring.SIGNIFICANT if row["drifted"] else monitoring.NONE,
                reference_model="customer_segmenter",
                reference_version=segmenter.number,
            )
        )
    columns = ["dataset", "column", "kind", "method", "statistic", "p_value", "psi", "threshold",
               "drifted", "psi_level", "reference_model", "reference_version"]  # fmt: skip
    table = pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)
    return table.astype({"drifted": bool}), notes, classifier


def classifier_table(results: dict[str, ClassifierDrift]) -> pd.DataFrame:
    rows = [
        {"dataset": d, "auc": c.auc, "drifted": c.drifted, "rows_per_side": c.rows,
         "top_columns": ", ".join(f"{n} ({v:.2f})" for n, v in c.top_features)}
        for d, c in results.items()
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["dataset", "auc", "drifted", "rows_per_side", "top_columns"])


def drift_check(verdict: monitoring.DriftVerdict) -> dg.AssetCheckResult:
    ok = verdict.level == monitoring.NONE
    significant = verdict.level == monitoring.SIGNIFICANT
    severity = dg.AssetCheckSeverity.ERROR if significant else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        check_name=NO_DRIFT.name,
        asset_key=NO_DRIFT.asset_key,
        passed=ok,
        severity=severity,
        description=verdict.reason,
        metadata={DRIFT_LEVEL: verdict.level, "drifted_columns": len(verdict.drifted_columns)},
    )


def build_monitoring_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    m = settings.monitoring
    s = drift_settings(m)
    common = {
        "group_name": GROUP,
        "kinds": {"pandas", "duckdb"},
        "metadata": {"schema": GROUP},
        "backfill_policy": SINGLE_RUN,
        "automation_condition": AFTER_GATES,
    }

    @dg.asset(
        **{**common, "automation_condition": AFTER_GATES_ANY_CHAMPION},
        check_specs=[NO_DRIFT],
        ins={**CHAMPION_INS, **SILVER_IN},
    )
    def feature_drift_report(
        context: dg.AssetExecutionContext,
        customer_features: pd.DataFrame,
        product_features: pd.DataFrame,
        customer_segmenter: Champion | None,
        sales_forecaster: Champion | None,
    ):
        """Drift of the latest monitoring.window_days of transaction lines and of the current
        customer and product features against the snapshots the champions were trained on
        (stored with each registered version), and of the champion segmenter's segment shares:
        one row per dataset and column with the method's statistic, p-value, PSI and verdict."""
        recent, as_of = pd.DataFrame(), None
        with silver_lines(settings) as lines:  # the window's lines, selected in the engine
            if lines.count().to_pyarrow().as_py():
                as_of = feature_as_of(lines, settings)
                recent = monitoring.transaction_columns(lines, as_of, m.window_days)
        current = {
            "transactions": recent,
            "customer_features": monitoring.feature_columns(customer_features),
            "product_features": monitoring.feature_columns(product_features),
        }
        threshold = m.classifier_auc_threshold if m.classifier_drift else None
        champions = {"customer_segmenter": customer_segmenter, "sales_forecaster": sales_forecaster}
        table, notes, classifier = drift_tables(champions, current, customer_features, s, threshold)
        verdict = monitoring.verdict(table, s)
        log = context.log.warning if verdict.level != monitoring.NONE else context.log.info
        log(verdict.reason)
        shares = {f"drift_share_{d}": float(part["drifted"].mean()) for d, part in table.groupby("dataset")}
        meta = {
            DRIFT_LEVEL: verdict.level,
            "reason": verdict.reason,
            "drifted_columns": len(verdict.drifted_columns),
            "drifted_column_names": json.dumps(verdict.drifted_columns),
            "drifted_datasets": json.dumps(verdict.drifted_datasets),
            "columns_compared": len(table),
            "max_psi": float(table["psi"].max()) if len(table) else 0.0,
            "current_window": f"{m.window_days} days up to {as_of}" if as_of is not None else "none",
            "notes": "\n".join(notes) or "none",
            **shares,
            **{f"classifier_auc_{d}": c.auc for d, c in classifier.items()},
            "classifier_drift": table_metadata(classifier_table(classifier).round(3)),
            "report": table_metadata(table.drop(columns=["reference_model"]).round(4), 60),
        }
        if len(table):
            meta["psi_plot"] = dg.MetadataValue.md(drift_md(table, m.psi_moderate, m.psi_significant))
        yield dg.Output(table, metadata=meta)
        yield drift_check(verdict)

    # it reads the forecasts sales_forecasts archives under forecasts/issued/: a declared
    # dependency, so lineage shows it and a selection `sales_forecasts+` includes it
    @dg.asset(**common, check_specs=[ACCURACY], deps=["sales_forecasts"])
    def forecast_performance(context: dg.AssetExecutionContext, sales_series: pd.DataFrame):
        """The forecasts issued earlier by each champion (kept under forecasts/issued/ by
        sales_forecasts) scored on the actuals that have arrived since: per series over the
        last monitoring.performance_window periods, MASE against the backtest MASE the
        forecast was issued with, MAPE, bias and 80/95% interval coverage."""

        def actuals(_archive: pd.DataFrame) -> pd.DataFrame:
            return sales_series[["series_id", "period", "revenue"]].assign(
                period=lambda d: pd.to_datetime(d["period"])
            )

        season = SEASON[settings.forecast.freq]
        yield from scored_issued(context, settings.issued_forecasts_dir, actuals, m, season, ACCURACY)

    return [feature_drift_report, forecast_performance]


def scored_issued(
    context: dg.AssetExecutionContext,
    folder: Path,
    actuals_for: Callable[[pd.DataFrame], pd.DataFrame],
    m: MonitoringSettings,
    season: int,
    spec: dg.AssetCheckSpec,
):
    """The forecasts issued under `folder` scored on the actuals `actuals_for(archive)` gives
    (series_id, period, revenue): the performance table with the metadata the UI and the retrain
    sensors read, and the accuracy check `spec` (forecast_performance, and the catalog's)."""
    started = time.perf_counter()
    files = sorted(folder.glob("*.parquet"))
    archive = pd.concat(map(pd.read_parquet, files), ignore_index=True) if files else pd.DataFrame()
    table = fp.score(archive, actuals_for(archive), season, m.performance_window, m.max_mase_degradation)
    bad, median, text = fp.degradation(table, m.max_mase_degradation)
    (context.log.error if bad else context.log.info)(text)
    meta = {
        DEGRADED: bad,
        "reason": text,
        "issued_files": len(files),
        "series_scored": len(table),
        "series_degraded": int(table["degraded"].sum()) if len(table) else 0,
        "seconds": time.perf_counter() - started,
        "performance": table_metadata(table.round(3), 50),
    }
    if np.isfinite(median):  # floats the UI charts over time
        meta |= {
            "median_mase_ratio": median,
            "mean_mase": float(table["mase"].mean()),
            "mean_backtest_mase": float(table["backtest_mase"].mean()),
            "mean_mape": float(table["mape"].mean()),
            "coverage80": float(table["coverage80"].mean()),
            "coverage95": float(table["coverage95"].mean()),
            "last_scored_period": str(table["last_period"].max().date()),
            "plot": dg.MetadataValue.md(performance_md(table, m.max_mase_degradation)),
        }
    yield dg.Output(table, metadata=meta)
    yield dg.AssetCheckResult(
        check_name=spec.name,
        asset_key=spec.asset_key,
        passed=not bad,
        severity=dg.AssetCheckSeverity.ERROR,
        description=text,
        metadata={"median_mase_ratio": median if np.isfinite(median) else -1.0},
    )
