"""Features: customer and product features as of the latest complete day, behind blocking
gates; their weekly point-in-time snapshots (the offline store read by
core.feature_store); and the holdout validation of the CLV model behind clv_12m."""

import dagster as dg
import pandas as pd

from mlops_assets.assets._governance import TRACKED, govern
from mlops_assets.assets._metadata import frame_metadata, table_metadata
from mlops_assets.assets.partitions import SINGLE_RUN, window_of
from mlops_assets.automation.freshness import model_freshness
from mlops_assets.automation.jobs import AFTER_GATES, TRAINING_CONDITION
from mlops_assets.checks.gates import Gate
from mlops_assets.core import clv, feature_store, schemas, snapshots
from mlops_assets.core.feature_registry import AS_OF, ENTITY, features_of, group_version, registry_table
from mlops_assets.core.promotion import Decision
from mlops_assets.core.schemas import PARTITION_COLUMN
from mlops_assets.settings import Settings

GROUP = "features"
INPUTS = {"customer": ("bronze_products",), "product": ("bronze_products", "bronze_inventory")}


def feature_gates(group: str) -> dict[str, Gate]:
    asset, entity = f"{group}_features", group
    return {
        "finite": Gate("no_infinite_features", asset, "No numeric feature holds an infinity."),
        "nulls": Gate(
            "feature_null_rates_within_limits",
            asset,
            "Each feature's null share stays under the registry's expected share "
            "(features.max_null_share in sources.yaml overrides it).",
        ),
        "range": Gate(
            "feature_values_in_range",
            asset,
            "Each numeric feature lies in its registered range (recency_days >= 0, shares in 0-1...).",
        ),
        "key": Gate(f"one_row_per_{entity}", asset, f"Exactly one row per {entity} id, none null."),
    }


def audit(gates: dict[str, Gate], table: pd.DataFrame, group: str, settings: Settings, where: str):
    defs = {f.name: f for f in features_of(group) if f.name in table.columns}
    numeric = [n for n, f in defs.items() if f.dtype != "string"]
    ceilings = {n: settings.features.max_null_share.get(n, f.max_null_share) for n, f in defs.items()}
    bounds = {n: (defs[n].low, defs[n].high) for n in numeric}
    return [
        gates["finite"].validate(schemas.finite_features_schema(numeric), table, where),
        gates["nulls"].validate(schemas.null_rate_schema(ceilings), table, where),
        gates["range"].validate(schemas.feature_range_schema(bounds), table, where),
        gates["key"].validate(schemas.one_row_per_entity_schema(ENTITY[group]), table, where),
    ]


def feature_as_of(silver: pd.DataFrame, settings: Settings) -> pd.Timestamp:
    """Midnight after the last loaded day of silver (the latest complete day), within the window."""
    end = window_of(settings).bounds.end
    if silver.empty:
        return pd.Timestamp(settings.window.start_date)
    last_day = pd.Timestamp(silver[PARTITION_COLUMN].max()) + pd.Timedelta(days=1)
    return feature_store.latest_complete_day(min(end, last_day), pd.Timestamp.now())


def summary_table(table: pd.DataFrame, group: str) -> pd.DataFrame:
    numeric = [f.name for f in features_of(group) if f.name in table.columns and f.dtype != "string"]
    stats = table[numeric].describe(percentiles=[0.5]).T
    stats["null_share"] = table[numeric].isna().mean()
    return stats.rename_axis("feature").reset_index()[
        ["feature", "count", "null_share", "mean", "std", "min", "50%", "max"]
    ]


def _sources(group: str, silver: pd.DataFrame, refs: dict[str, pd.DataFrame]) -> feature_store.Sources:
    products = refs.get("bronze_products")
    inventory = refs.get("bronze_inventory")
    return feature_store.Sources(
        silver,
        products if products is not None and len(products) else None,
        inventory if inventory is not None and len(inventory) else None,
    )


def _common(name: str, group: str) -> dict:
    """What the feature table and its snapshots share: inputs, warehouse schema, automation,
    and the group's feature version as code version (a changed definition shows as changed)."""
    return {
        "name": name,
        "group_name": GROUP,
        "kinds": {"pandas", "duckdb"},
        "ins": {"silver_transactions": dg.AssetIn(), **{r: dg.AssetIn() for r in INPUTS[group]}},
        "metadata": {"schema": GROUP},
        "backfill_policy": SINGLE_RUN,
        "automation_condition": AFTER_GATES,
        "code_version": group_version(group),
    }


def _feature_asset(settings: Settings, group: str) -> dg.AssetsDefinition:
    gates = feature_gates(group)
    name = f"{group}_features"

    @dg.asset(
        **_common(name, group),
        check_specs=[g.spec for g in gates.values()],
        output_required=False,
        description=f"{group.title()} features as of the latest complete day (`{AS_OF}` in metadata): "
        "one row per entity, definitions and versions in core/feature_registry.py. The online "
        "store serves this table.",
    )
    def _asset(context: dg.AssetExecutionContext, silver_transactions: pd.DataFrame, **refs):
        as_of = feature_as_of(silver_transactions, settings)
        table = _sources(group, silver_transactions, refs).features(group, as_of)
        results = audit(gates, table, group, settings, f"{name} as of {as_of.date()}")
        failed = [r for r in results if not r.passed]
        for r in failed:
            context.log.error(r.description)
        if not failed:
            versions = registry_table(group)
            versions = versions[versions["name"].isin(table.columns)]
            yield dg.Output(
                table,
                metadata={
                    AS_OF: as_of.isoformat(),
                    "feature_version": group_version(group),
                    "entities": len(table),
                    "features": table_metadata(summary_table(table, group), 40),
                    "registry": table_metadata(versions.drop(columns="group"), 40),
                    **_headline(table, group),
                    **frame_metadata(table),
                },
            )
        yield from results

    return _asset


def _headline(table: pd.DataFrame, group: str) -> dict[str, float]:
    """A few floats the UI charts run over run."""
    cols = ["recency_days", "monetary", "clv_12m"] if group == "customer" else ["price", "sales_velocity_28d"]
    return {f"median_{c}": float(table[c].median()) for c in cols if c in table and table[c].notna().any()}


def _snapshot_asset(settings: Settings, group: str) -> dg.AssetsDefinition:
    name = f"{group}_feature_snapshots"

    @dg.asset(
        **_common(name, group),
        description=f"The offline store: {group} features as of every {settings.features.snapshot_freq} "
        "instant of the window and the latest complete day, each computed from data strictly "
        f"before its `{AS_OF}`; training sets join on it as of any past date "
        "(core.feature_store.FeatureStore.get_historical_features).",
    )
    def _asset(context: dg.AssetExecutionContext, silver_transactions: pd.DataFrame, **refs):
        as_of = feature_as_of(silver_transactions, settings)
        dates = feature_store.snapshot_dates(
            settings.window.start_date, as_of, settings.features.snapshot_freq
        )
        previous, why = snapshots.stored_snapshots(settings.warehouse_path, group)
        if why:
            context.log.info(f"{name}: {why}; computing every instant")
        done = snapshots.refresh_snapshots(
            _sources(group, silver_transactions, refs), group, dates, previous, settings.features.workers
        )
        table = done.table
        context.log.info(
            f"{name}: {len(done.computed)} of {len(dates)} instants computed, {len(done.reused)} reused "
            "(inputs unchanged)"
        )
        per_snapshot = table.groupby(AS_OF).size().rename("entities").reset_index()
        computed = pd.DataFrame({AS_OF: done.computed})
        return dg.Output(
            table,
            metadata={
                "snapshots": len(dates),
                "snapshots_computed": len(done.computed),
                "snapshots_reused": len(done.reused),
                "computed_instants": table_metadata(computed.tail(12), 12),
                "first_snapshot": dates[0].isoformat(),
                "last_snapshot": dates[-1].isoformat(),
                "feature_version": group_version(group),
                "rows": len(table),
                "entities_per_snapshot": table_metadata(per_snapshot.tail(12), 12),
                "dagster/column_schema": frame_metadata(table)["dagster/column_schema"],
            },
        )

    return _asset


def _clv_validation_asset(settings: Settings) -> dg.AssetsDefinition:
    @dg.asset(
        group_name=GROUP,
        kinds={"pandas", "scipy", "duckdb"},
        metadata={"schema": GROUP},
        backfill_policy=SINGLE_RUN,
        automation_condition=TRAINING_CONDITION,
        code_version="1",
        freshness_policy=model_freshness(settings),
        **TRACKED,
    )
    def clv_validation_report(
        context: dg.AssetExecutionContext, silver_transactions: pd.DataFrame
    ) -> dg.Output:
        """The CLV model behind clv_12m on a calibration / holdout split: fitted on history
        before (latest complete day - horizon), scored on the horizon that followed, against
        the naive "next 12 months = last 12 months" guess."""
        horizon = settings.features.clv_horizon_days
        as_of = feature_as_of(silver_transactions, settings)
        calibration_end = as_of - pd.Timedelta(days=horizon)
        history_days = (calibration_end - pd.Timestamp(settings.window.start_date)).days
        try:  # validate_clv refuses a history with too few repeat customers to fit
            report = (
                clv.validate_clv(silver_transactions, calibration_end, horizon) if history_days > 0 else None
            )
        except ValueError:
            report = None
        if report is None:
            note = (
                f"not enough history: a {horizon}-day holdout before {as_of.date()} leaves "
                f"{max(history_days, 0)} days of calibration data with too few repeat customers"
            )
            empty = pd.DataFrame({"method": pd.Series(dtype=schemas.TEXT)}).assign(
                mae=float("nan"), rmse=float("nan"), total_error_pct=float("nan")
            )
            return dg.Output(empty, metadata={"note": note})
        table = pd.DataFrame(
            [
                {"method": "bg_nbd_gamma_gamma", **report["model"]},
                {"method": "naive_last_period", **report["naive"]},
            ]
        )
        params = pd.DataFrame([report["params"]])
        governance = _govern_clv(context, silver_transactions, as_of, report, table)
        return dg.Output(
            table,
            metadata={
                "calibration_end": calibration_end.isoformat(),
                "holdout_days": horizon,
                "customers": report["customers"],
                "mae_ratio_vs_naive": float(report["mae_ratio_vs_naive"]),
                "model_mae": float(report["model"]["mae"]),
                "naive_mae": float(report["naive"]["mae"]),
                "model_total_error_pct": float(report["model"]["total_error_pct"]),
                "naive_total_error_pct": float(report["naive"]["total_error_pct"]),
                "errors": table_metadata(table),
                "fitted_parameters": table_metadata(params),
                **governance,
            },
        )

    return clv_validation_report


def _govern_clv(context, transactions: pd.DataFrame, as_of, report: dict, table: pd.DataFrame) -> dict:
    """The CLV model behind clv_12m (refitted on all history, as the features do) is tracked and
    registered; it is champion while it beats the naive guess on the holdout."""
    model = clv.fit_clv(clv.rfm_summary(transactions, as_of))
    ratio = float(report["mae_ratio_vs_naive"])
    verdict = Decision(
        ratio < 1,
        f"holdout MAE {ratio:.2f}x the naive guess: " + ("beats it" if ratio < 1 else "does not beat it"),
        {"mae_ratio_vs_naive": ratio},
    )
    return govern(
        context,
        "clv_model",
        model,
        lambda champion: verdict,
        params={**model.params(), "customers": model.customers, "fitted_as_of": as_of.isoformat()},
        metrics={
            "mae_ratio_vs_naive": ratio,
            "model_mae": float(report["model"]["mae"]),
            "naive_mae": float(report["naive"]["mae"]),
        },
        data=transactions[["customer_id", "order_id", "order_ts", "quantity", "amount"]],
        artifacts={"clv_validation_report.csv": table},
        asset="clv_validation_report",  # the model's code is this asset's
        example=clv.rfm_summary(transactions, as_of).head(5),  # pyfunc: CLV of rfm_summary rows
    )


def build_feature_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    return [
        _feature_asset(settings, "customer"),
        _feature_asset(settings, "product"),
        _snapshot_asset(settings, "customer"),
        _snapshot_asset(settings, "product"),
        _clv_validation_asset(settings),
    ]
