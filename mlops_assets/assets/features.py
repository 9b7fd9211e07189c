"""Features: customer and product features as of the latest complete day, behind blocking
gates; their weekly point-in-time snapshots (the offline store read by
core.feature_store); and the holdout validation of the CLV model behind clv_12m."""

import dagster as dg
import ibis
import pandas as pd

from mlops_assets.assets._governance import TRACKED, govern
from mlops_assets.assets._lines import SILVER_IN, silver_lines
from mlops_assets.assets._metadata import frame_metadata, table_metadata
from mlops_assets.assets.partitions import SINGLE_RUN, window_of
from mlops_assets.automation.freshness import model_freshness
from mlops_assets.automation.jobs import AFTER_GATES, TRAINING_CONDITION
from mlops_assets.checks.gates import Gate
from mlops_assets.core import clv, customer_checkpoint, engine, feature_store, schemas, snapshots
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


def feature_as_of(silver: ibis.Table, settings: Settings) -> pd.Timestamp:
    """Midnight after the last loaded day of silver (the latest complete day), within the window.
    `silver`: the lines as an Ibis table (assets/_lines.py)."""
    end = window_of(settings).bounds.end
    last = engine.to_frame(silver.aggregate(last=silver[PARTITION_COLUMN].max()))["last"].iloc[0]
    if last is None or pd.isna(last):
        return pd.Timestamp(settings.window.start_date)
    last_day = pd.Timestamp(last) + pd.Timedelta(days=1)
    return feature_store.latest_complete_day(min(end, last_day), pd.Timestamp.now())


def summary_table(table: pd.DataFrame, group: str) -> pd.DataFrame:
    numeric = [f.name for f in features_of(group) if f.name in table.columns and f.dtype != "string"]
    stats = table[numeric].describe(percentiles=[0.5]).T
    stats["null_share"] = table[numeric].isna().mean()
    return stats.rename_axis("feature").reset_index()[
        ["feature", "count", "null_share", "mean", "std", "min", "50%", "max"]
    ]


def _references(refs: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The catalog and the inventory, None where absent or empty."""
    products, inventory = refs.get("bronze_products"), refs.get("bronze_inventory")
    return (
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
        "ins": {**SILVER_IN, **{r: dg.AssetIn() for r in INPUTS[group]}},
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
    def _asset(context: dg.AssetExecutionContext, **refs):
        products, inventory = _references(refs)
        reached = None
        with silver_lines(settings) as lines:  # the lines stay in the engine; a row per entity returns
            as_of = feature_as_of(lines, settings)
            if group == "customer":  # the customers' totals: resumed from a checkpoint where one holds
                folder = customer_checkpoint.folder_of(settings.warehouse_path)
                reached = customer_checkpoint.reach(lines, products, as_of, folder=folder)
                context.log.info(f"{name}: customers' running totals {reached.describe()}")
            state = None if reached is None else reached.state
            table = feature_store.Sources(lines, products, inventory, _state=state).features(group, as_of)
            if reached is not None:
                customer_checkpoint.save(reached.state, folder, reached.digest)
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
                    **({} if reached is None else {"running_totals": reached.describe()}),
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
    def _asset(context: dg.AssetExecutionContext, **refs) -> dg.MaterializeResult:
        products, inventory = _references(refs)
        with silver_lines(settings) as lines:
            as_of = feature_as_of(lines, settings)
        dates = feature_store.snapshot_dates(
            settings.window.start_date, as_of, settings.features.snapshot_freq
        )
        done = snapshots.refresh_snapshots(settings.warehouse_path, group, dates, products, inventory)
        context.log.info(
            f"{name}: {len(done.computed)} of {len(dates)} instants computed, {len(done.reused)} reused "
            "(inputs unchanged)"
        )
        per_snapshot = snapshots.instant_counts(settings.warehouse_path, group)
        computed = pd.DataFrame({AS_OF: done.computed, "entities": [done.rows[d] for d in done.computed]})
        meta = {
            "snapshots": len(dates),
            "snapshots_computed": len(done.computed),
            "snapshots_reused": len(done.reused),
            "computed_instants": table_metadata(computed.tail(12), 12),
            "first_snapshot": dates[0].isoformat(),
            "last_snapshot": dates[-1].isoformat(),
            "feature_version": group_version(group),
            "dagster/row_count": int(per_snapshot["entities"].sum()),
            "entities_per_snapshot": table_metadata(per_snapshot.tail(12), 12),
            "dagster/storage_kind": "delta" if settings.warehouse == "delta" else "duckdb",
        }
        if done.columns is not None:
            meta["dagster/column_schema"] = frame_metadata(done.columns)["dagster/column_schema"]
        return dg.MaterializeResult(metadata=meta)

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
        ins=SILVER_IN,
        **TRACKED,
    )
    def clv_validation_report(context: dg.AssetExecutionContext) -> dg.Output:
        """The CLV model behind clv_12m on a calibration / holdout split: fitted on history
        before (latest complete day - horizon), scored on the horizon that followed, against
        the naive "next 12 months = last 12 months" guess. The lines are summed per customer in
        the engine (DuckDB, out of core)."""
        horizon = settings.features.clv_horizon_days
        with silver_lines(settings) as lines:
            as_of = feature_as_of(lines, settings)
            calibration_end = as_of - pd.Timedelta(days=horizon)
            history_days = (calibration_end - pd.Timestamp(settings.window.start_date)).days
            try:  # validate_clv refuses a history with too few repeat customers to fit
                report = clv.validate_clv(lines, calibration_end, horizon) if history_days > 0 else None
            except ValueError:
                report = None
            summary = clv.rfm_summary(lines, as_of) if report is not None else None
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
        governance = _govern_clv(context, summary, as_of, report, table)
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


def _govern_clv(context, summary: pd.DataFrame, as_of, report: dict, table: pd.DataFrame) -> dict:
    """The CLV model behind clv_12m (refitted on all history, as the features do) is tracked and
    registered; it is champion while it beats the naive guess on the holdout. Its training data
    is what it is fitted on: the customers' (x, t_x, T, m) summary as of the latest day."""
    model = clv.fit_clv(summary)
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
        data=summary.reset_index(),
        artifacts={"clv_validation_report.csv": table},
        asset="clv_validation_report",  # the model's code is this asset's
        example=summary.head(5),  # pyfunc: CLV of rfm_summary rows
    )


def build_feature_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    return [
        _feature_asset(settings, "customer"),
        _feature_asset(settings, "product"),
        _snapshot_asset(settings, "customer"),
        _snapshot_asset(settings, "product"),
        _clv_validation_asset(settings),
    ]
