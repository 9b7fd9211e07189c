"""The ingestion graph materialized in process over small generated data directories."""

import dagster as dg
import pandas as pd

from mlops_assets.definitions import build_definitions
from mlops_assets.settings import load_settings
from mlops_assets_tests.conftest import (
    INGESTION,
    check_results,
    edit_sources,
    group_keys,
    read_table,
    rewrite_transactions,
    run_graph,
)

START, END = "2023-01-01", "2023-03-31"
SILVER = "silver_transactions"


def test_definitions_have_groups_partitions_and_blocking_checks(small_data_dir):
    defs = build_definitions(load_settings(small_data_dir))
    graph = defs.resolve_asset_graph()
    groups = {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert groups == {
        "bronze_transactions": "bronze",
        "bronze_products": "bronze",
        "bronze_inventory": "bronze",
        "silver_transactions": "silver",
        "quarantined_transactions": "silver",
        "data_quality_report": "quality",
        "customer_features": "features",
        "product_features": "features",
        "customer_feature_snapshots": "features",
        "product_feature_snapshots": "features",
        "clv_validation_report": "features",
        "sales_series": "forecasting",
        "sales_forecaster": "forecasting",
        "forecast_choices": "forecasting",
        "forecast_backtest_report": "forecasting",
        "sales_forecasts": "forecasting",
        "customer_segmenter": "segmentation",
        "segmentation_report": "segmentation",
        "customer_segments": "segmentation",
        "sales_anomaly_detector": "anomalies",
        "sales_anomalies": "anomalies",
        "model_audit_log": "registry",
        "model_cards": "registry",
        "feature_drift_report": "monitoring",
        "forecast_performance": "monitoring",
        "served_predictions": "serving",
        "served_input_drift": "monitoring",
        "shadow_report": "monitoring",
    }
    # `dagster asset materialize --partition-range` (README command 1) refuses any other policy
    policies = {k.to_user_string(): graph.get(k).backfill_policy for k in graph.get_all_asset_keys()}
    assert {k for k, p in policies.items() if p != dg.BackfillPolicy.single_run()} == set()
    silver = graph.get(dg.AssetKey("silver_transactions"))
    # monthly partitions over the window: the months that hold its first and last days
    assert silver.partitions_def.get_partition_keys() == ["2023-01", "2023-02", "2023-03"]
    march = silver.partitions_def.time_window_for_partition_key("2023-03")
    assert (march.start.date().isoformat(), march.end.date().isoformat()) == ("2023-03-01", "2023-04-01")
    checks = {k.name: graph.get(k).blocking for k in graph.asset_check_keys}
    assert checks["matches_source_schema"] and checks["quarantine_share_within_limit"]
    assert checks["silhouette_above_minimum"] and checks["segments_stable_under_resampling"]


def test_range_run_builds_every_table_and_reconciles(small_data_dir):
    result = run_graph(small_data_dir, START, END)
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    source_rows = len(pd.read_csv(small_data_dir / "raw/transactions.csv.gz"))
    bronze = read_table(small_data_dir, "bronze.bronze_transactions")
    silver = read_table(small_data_dir, "silver.silver_transactions")
    quarantined = read_table(small_data_dir, "silver.quarantined_transactions")
    report = read_table(small_data_dir, "quality.data_quality_report")
    # nothing lost: every source row is in exactly one of silver or quarantine
    assert len(bronze) == source_rows == len(silver) + len(quarantined)
    keys = pd.concat([silver, quarantined])[["source_file", "source_row"]]
    assert not keys.duplicated().any()
    assert set(quarantined["reason"]) >= {"duplicate_line", "future_timestamp", "missing_key"}
    assert report["bronze_rows"].sum() == source_rows
    assert len(read_table(small_data_dir, "bronze.bronze_products")) == 200
    mats = {e.asset_key.to_user_string(): e for e in result.get_asset_materialization_events()}
    meta = mats["data_quality_report"].materialization.metadata
    assert meta["quarantine_share"].value == len(quarantined) / source_rows
    # table metadata, a row per rule: the sample's duplicated lines are counted
    per_rule = {r.data["rule"]: r.data["lines"] for r in meta["counts_per_rule"].records}
    assert per_rule["duplicate_line"] == (quarantined["reason"].str.contains("duplicate_line")).sum() > 0


def test_one_month_run_rewrites_only_its_partition(small_data_dir):
    ingestion = group_keys(small_data_dir, *INGESTION)
    whole = run_graph(small_data_dir, START, END, selection=ingestion)
    assert whole.success
    before = read_table(small_data_dir, "silver.silver_transactions")
    # a range run labels its row count as the range's, not as each partition's
    (silver_event, *_) = [e for e in whole.get_asset_materialization_events() if e.asset_key.path == [SILVER]]
    meta = silver_event.materialization.metadata
    assert meta["rows_in_run"].value == len(before) and "dagster/partition_row_count" not in meta
    # ...and its preview as the range's, beside the lines of each month
    assert "preview" not in meta and meta["run_preview_covers"].value == "2023-01...2023-03"
    per_month = {r.data["partition"]: r.data["rows"] for r in meta["rows_per_partition"].records}
    months = before["partition_date"].dt.strftime("%Y-%m").value_counts()
    assert per_month == months.to_dict()  # table metadata: a row per month
    february = run_graph(small_data_dir, "2023-02-10", "2023-02-10", selection=ingestion)
    assert february.success
    after = read_table(small_data_dir, "silver.silver_transactions")
    assert len(after) == len(before)  # the month was replaced, not appended

    def other_months(t):  # the lines of January and March, untouched by a February run
        keep = (t["partition_date"] < "2023-02-01") | (t["partition_date"] >= "2023-03-01")
        return sorted(t.loc[keep, ["source_file", "source_row"]].itertuples(index=False, name=None))

    assert other_months(after) == other_months(before) and len(other_months(before)) > 0
    (event,) = [e for e in february.get_asset_materialization_events() if e.asset_key.path == [SILVER]]
    in_month = (after["partition_date"] >= "2023-02-01") & (after["partition_date"] < "2023-03-01")
    assert event.partition == "2023-02"
    assert event.materialization.metadata["dagster/partition_row_count"].value == in_month.sum() > 0
    # a one-month run previews that month
    preview = event.materialization.metadata["preview"].records  # table metadata
    months = {str(r.data["order_ts"])[:7] for r in preview}
    assert preview and months == {"2023-02"}


def test_renamed_customer_column_stops_the_run_at_the_schema_gate(small_data_dir):
    ingestion = group_keys(small_data_dir, *INGESTION)
    assert run_graph(small_data_dir, START, END, selection=ingestion).success
    silver_before = read_table(small_data_dir, "silver.silver_transactions")
    rewrite_transactions(small_data_dir, lambda df: df.rename(columns={"customer": "client"}))
    result = run_graph(small_data_dir, START, END, selection=ingestion)
    assert not result.success
    checks = check_results(result)
    assert not checks["matches_source_schema"].passed
    assert (
        "column 'customer_id' (mapped from file column 'customer') is missing from raw/transactions.csv.gz"
        in checks["matches_source_schema"].description
    )
    # nothing downstream ran, and the published tables are as they were
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert not materialized & {"bronze_transactions", "silver_transactions", "quarantined_transactions"}
    pd.testing.assert_frame_equal(read_table(small_data_dir, "silver.silver_transactions"), silver_before)


def test_price_strings_stop_the_run_naming_unit_price(small_data_dir):
    rewrite_transactions(small_data_dir, lambda df: df.assign(unit_price="USD " + df["unit_price"]))
    result = run_graph(small_data_dir, START, END)
    gate = check_results(result)["matches_source_schema"]
    assert not result.success and not gate.passed
    assert "column 'unit_price' breaks rule parses_as_float" in gate.description


def test_corrupt_upstream_blocks_at_quarantine_share(small_data_dir):
    # prices off by 1000x on a third of the lines: each line looks like an outlier
    def inflate(df):
        df = df.copy()
        rows = df.index[::3]
        df.loc[rows, "unit_price"] = (df.loc[rows, "unit_price"].astype(float) * 1000).astype(str)
        return df

    rewrite_transactions(small_data_dir, inflate)
    result = run_graph(small_data_dir, START, END)
    gate = check_results(result)["quarantine_share_within_limit"]
    assert not result.success and not gate.passed
    assert "exceeds quality.max_quarantine_share 5%" in gate.description
    assert "outlier_price" in gate.description
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "silver_transactions" not in materialized


def test_null_explosion_blocks_at_null_gate(small_data_dir):
    rewrite_transactions(small_data_dir, lambda df: df.assign(store=None))
    result = run_graph(small_data_dir, START, END)
    gate = check_results(result)["null_rates_within_limits"]
    assert not result.success and not gate.passed
    assert "column 'store_id' breaks rule null_rate<=0.02 (null share 100.0%)" in gate.description


def test_missing_optional_sources_degrade_gracefully(small_data_dir):
    edit_sources(small_data_dir, lambda s: (s.pop("products"), s.pop("inventory")))
    result = run_graph(small_data_dir, START, END)
    assert result.success
    mats = {e.asset_key.to_user_string(): e for e in result.get_asset_materialization_events()}
    assert "no 'products' source" in mats["bronze_products"].materialization.metadata["notes"].value
    quarantined = read_table(small_data_dir, "silver.quarantined_transactions")
    assert "unknown_product" not in set(quarantined["reason"])
    # feature groups whose source is absent are left out, the rest are computed
    customers = read_table(small_data_dir, "features.customer_features")
    products = read_table(small_data_dir, "features.product_features")
    assert "favourite_category" not in customers and customers["recency_days"].notna().mean() > 0.95
    assert not {"category", "rating", "inventory_ratio"} & set(products.columns)
    assert products["sales_velocity_28d"].notna().all()


def test_steps_run_in_process_unless_sources_yaml_asks_for_processes(small_data_dir):
    job = build_definitions(load_settings(small_data_dir)).resolve_implicit_global_asset_job_def()
    assert job.executor_def.name == "in_process"
    edit_sources(small_data_dir, lambda s: s.update(executor="multiprocess"))
    job = build_definitions(load_settings(small_data_dir)).resolve_implicit_global_asset_job_def()
    assert job.executor_def.name == "multiprocess"
