"""Serving, as the graph sees it: the prediction log of mlops-serve as a table, drift of the
inputs it served against the champion segmenter's training data, and the shadow report that
puts the challenger's answers beside the champion's (agreement, and accuracy once actuals
arrive), tagged on the challenger's version for the promotion decision."""

import json

import dagster as dg
import numpy as np
import pandas as pd

from mlops_assets.assets._metadata import frame_metadata, table_metadata
from mlops_assets.assets.monitoring import CHAMPION_INS, DRIFT_LEVEL, drift_settings
from mlops_assets.assets.partitions import SINGLE_RUN
from mlops_assets.automation.jobs import AFTER_GATES_ANY_CHAMPION
from mlops_assets.core import monitoring
from mlops_assets.core import serving_monitor as sm
from mlops_assets.core.drift import COLUMNS, drift_report
from mlops_assets.resources.models import Champion
from mlops_assets.resources.registry import ModelRegistry
from mlops_assets.serving.predlog import read_log
from mlops_assets.settings import Settings

SERVING, MONITORING = "serving", "monitoring"
SERVED_DRIFT = dg.AssetCheckSpec(
    "served_inputs_match_training",
    asset="served_input_drift",
    description="Warns when the feature values the service scored drifted from the champion "
    "segmenter's training snapshot (a column's test, or PSI >= psi_moderate).",
)
# the log grows outside Dagster: read it every hour (and on demand); what reads it follows
LOG_CADENCE = dg.AutomationCondition.on_cron("0 * * * *")


def _summary(table: pd.DataFrame) -> pd.DataFrame:
    if table.empty:
        return pd.DataFrame(columns=["route", "status", "served_by", "requests", "p50_ms", "p95_ms"])
    return (
        table.assign(served_by=table["served_by"].fillna("-"))
        .groupby(["route", "status", "served_by"], dropna=False)["latency_ms"]
        .agg(requests="size", p50_ms="median", p95_ms=lambda x: float(np.percentile(x, 95)))
        .reset_index()
        .round(3)
    )


def build_serving_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    s = drift_settings(settings.monitoring)
    common = {"kinds": {"pandas", "duckdb"}, "backfill_policy": SINGLE_RUN}

    @dg.asset(group_name=SERVING, metadata={"schema": SERVING}, automation_condition=LOG_CADENCE, **common)
    def served_predictions() -> dg.Output:
        """Every request mlops-serve answered, read from its prediction log
        (<data dir>/serving/predictions/*.jsonl): time, route, entity, status, which alias
        answered, latency, the model versions, the inputs scored and both aliases' answers
        (JSON text, for SQL's json functions)."""
        table, stats = read_log(settings.prediction_log_dir)
        ok = table[table["status"] == 200]
        return dg.Output(
            table,
            metadata={
                "rows": len(table),
                **{k: v for k, v in stats.items() if k != "records"},
                "log_folder": str(settings.prediction_log_dir),
                "error_share": float((table["status"] != 200).mean()) if len(table) else 0.0,
                "challenger_answer_share": float((ok["served_by"] == "challenger").mean())
                if len(ok)
                else 0.0,
                "shadow_scored_share": float(ok["challenger_output"].notna().mean()) if len(ok) else 0.0,
                "latency_p95_ms": float(np.percentile(ok["latency_ms"], 95)) if len(ok) else 0.0,
                "first_request": str(table["ts"].min()) if len(table) else "none",
                "last_request": str(table["ts"].max()) if len(table) else "none",
                "by_route": table_metadata(_summary(table), 30),
                **frame_metadata(table.drop(columns=["inputs", "champion_output", "challenger_output"])),
            },
        )

    @dg.asset(
        group_name=MONITORING,
        metadata={"schema": MONITORING},
        automation_condition=AFTER_GATES_ANY_CHAMPION,
        check_specs=[SERVED_DRIFT],
        ins={"customer_segmenter": CHAMPION_INS["customer_segmenter"]},
        **common,
    )
    def served_input_drift(
        context: dg.AssetExecutionContext,
        served_predictions: pd.DataFrame,
        customer_segmenter: Champion | None,
    ):
        """Drift of the customer feature values the service scored for the current champion
        segmenter (GET /v1/customers answers and POST /v1/segments:score instances) against
        the snapshot of customer_features that champion was trained on."""
        reference = customer_segmenter.reference("customer_features") if customer_segmenter else None
        version = customer_segmenter.number if customer_segmenter else None
        current = sm.served_inputs(served_predictions, version)
        if reference is None or current.empty:
            note = (
                "no champion segmenter with a training snapshot yet"
                if reference is None
                else f"no request was served by customer_segmenter v{version} yet"
            )
            table = pd.DataFrame(columns=[*COLUMNS, "psi_level", "dataset"])
            verdict = monitoring.DriftVerdict(monitoring.NONE, f"nothing to compare: {note}", [], [])
        else:
            table = drift_report(reference, current, s).assign(dataset="served_inputs")
            verdict = monitoring.verdict(table, s)
            note = f"{len(current)} feature rows served by customer_segmenter v{version}"
        (context.log.warning if verdict.level != monitoring.NONE else context.log.info)(verdict.reason)
        by_route = current["route"].value_counts().to_dict() if len(current) else {}
        yield dg.Output(
            table,
            metadata={
                DRIFT_LEVEL: verdict.level,
                "reason": verdict.reason,
                "served_rows": len(current),
                **{f"served_rows_{k}": int(v) for k, v in by_route.items()},
                "reference_version": version or "none",
                "columns_compared": len(table),
                "drifted_column_names": json.dumps(verdict.drifted_columns),
                "max_psi": float(table["psi"].max()) if len(table) else 0.0,
                "note": note,
                "report": table_metadata(table.round(4), 40),
            },
        )
        yield dg.AssetCheckResult(
            check_name=SERVED_DRIFT.name,
            asset_key=SERVED_DRIFT.asset_key,
            passed=verdict.level == monitoring.NONE,
            severity=dg.AssetCheckSeverity.WARN,
            description=verdict.reason,
            metadata={DRIFT_LEVEL: verdict.level},
        )

    @dg.asset(
        group_name=MONITORING,
        metadata={"schema": MONITORING},
        automation_condition=AFTER_GATES_ANY_CHAMPION,
        required_resource_keys={"registry"},
        **common,
    )
    def shadow_report(
        context: dg.AssetExecutionContext, served_predictions: pd.DataFrame, sales_series: pd.DataFrame
    ) -> dg.Output:
        """The challenger's answers beside the champion's on the same requests (shadow or canary
        mode), per model and pair of versions: how often they agreed, and for forecasts each
        one's MAE on the served periods whose actuals have arrived, with a Wilcoxon test and a
        recommendation. The figures are tagged on the challenger's version (shadow.*) so that
        the promotion decision, in the MLflow UI or in code, can read them."""
        actuals = sales_series[["series_id", "period", "revenue"]].rename(columns={"revenue": "actual"})
        actuals = actuals.assign(series_id=actuals["series_id"].astype(str))
        pairs = sm.shadow_pairs(served_predictions)
        table = sm.shadow_report(pairs, actuals, settings.registry.alpha)
        _tag_challengers(context.resources.registry, table)
        return dg.Output(
            table,
            metadata={
                "pairs_compared": len(pairs),
                "model_pairs": len(table),
                "report": table_metadata(table.round(4), 30),
                **{f"agreement_{r.model}": float(r.agreement) for r in table.itertuples()},
            },
        )

    return [served_predictions, served_input_drift, shadow_report]


def _tag_challengers(registry: ModelRegistry, table: pd.DataFrame) -> None:
    client = registry.client
    for row in table.to_dict("records"):
        if not row["challenger_version"]:
            continue
        for key in ("requests", "agreement", "actuals", "champion_mae", "challenger_mae", "p_value",
                    "recommendation", "champion_version"):  # fmt: skip
            value = row[key]
            if value is not None and not (isinstance(value, float) and np.isnan(value)):
                client.set_model_version_tag(
                    row["model"], str(row["challenger_version"]), f"shadow.{key}", str(value)[:5000]
                )
