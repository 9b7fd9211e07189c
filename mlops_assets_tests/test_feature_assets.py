"""The feature assets materialized over the small sample: gates, warehouse tables, and the
retrieval API reading them back."""

import dagster as dg
import pandas as pd

from mlops_assets.core import feature_store as fs
from mlops_assets.core.feature_registry import AS_OF, VERSION, group_version
from mlops_assets.core.snapshots import DIGEST
from mlops_assets_tests.conftest import check_results, edit_sources, feature_keys, read_table, run_graph

START, END = "2023-01-01", "2023-03-31"
LATEST = pd.Timestamp("2023-04-01")


def test_features_land_in_the_warehouse_and_serve_identically(small_data_dir):
    # a 28-day CLV horizon leaves two months of calibration data in a three-month sample
    edit_sources(small_data_dir, lambda s: s.update(features={"clv_horizon_days": 28}))
    result = run_graph(small_data_dir, START, END)
    assert result.success
    checks = [e for e in result.get_asset_check_evaluations() if e.asset_key.path[0].endswith("_features")]
    assert len(checks) == 8 and all(e.passed for e in checks)

    customers = read_table(small_data_dir, "features.customer_features")
    snapshots = read_table(small_data_dir, "features.customer_feature_snapshots")
    assert customers["customer_id"].is_unique and customers["clv_12m"].notna().all()
    assert snapshots[AS_OF].max() == LATEST and (snapshots[VERSION] == group_version("customer")).all()
    assert snapshots[AS_OF].nunique() == 14  # 13 Mondays of the quarter and April 1st
    # the snapshot asset and the feature asset compute the latest values independently
    latest = snapshots[snapshots[AS_OF] == LATEST].drop(columns=[AS_OF, VERSION, DIGEST])
    pd.testing.assert_frame_equal(
        latest.sort_values("customer_id").reset_index(drop=True),
        customers.sort_values("customer_id").reset_index(drop=True),
    )

    database = small_data_dir / "warehouse.duckdb"
    ids = list(customers["customer_id"].sample(20, random_state=0))
    hist = fs.get_historical_features(
        pd.DataFrame({"customer_id": ids, "event_ts": LATEST}), "customer", database
    )
    served = fs.get_online_features(ids, "customer", database)
    online = fs.OnlineFeatureStore.from_warehouse(database).get_online_frame(ids, "customer")
    pd.testing.assert_frame_equal(hist[online.columns], online)
    assert served["clv_12m"] == online["clv_12m"].tolist()
    # a training set as of a past date reads the snapshot, not today's values
    past = fs.get_historical_features(
        pd.DataFrame({"customer_id": ids, "event_ts": "2023-02-01 09:00"}), "customer", database
    )
    assert (past[AS_OF] == pd.Timestamp("2023-01-30")).all()
    assert (past["tenure_days"].dropna() < online["tenure_days"].max()).all()

    report = read_table(small_data_dir, "features.clv_validation_report")
    assert list(report["method"]) == ["bg_nbd_gamma_gamma", "naive_last_period"]
    mats = {
        e.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert mats["clv_validation_report"]["mae_ratio_vs_naive"].value > 0
    meta = mats["customer_features"]
    assert meta[AS_OF].value == LATEST.isoformat()
    listed = {r.data["feature"] for r in meta["features"].records}  # table metadata
    registered = {str(v) for r in meta["registry"].records for v in r.data.values()}
    assert "clv_12m" in listed and "recency_days" in registered


def test_a_failing_feature_gate_keeps_the_previous_table(small_data_dir):
    keys = feature_keys(small_data_dir)
    assert run_graph(small_data_dir, START, END, selection=keys).success
    before = read_table(small_data_dir, "features.customer_features")
    # one-order customers make avg_days_between_orders null: a zero ceiling must block
    edit_sources(
        small_data_dir, lambda s: s.update(features={"max_null_share": {"avg_days_between_orders": 0.0}})
    )
    result = run_graph(small_data_dir, START, END, selection=keys)
    gate = [
        e
        for e in result.get_asset_check_evaluations()
        if e.asset_key.to_user_string() == "customer_features"
        and e.check_name == "feature_null_rates_within_limits"
    ][0]
    assert not gate.passed
    assert "column 'avg_days_between_orders' breaks rule null_rate<=0" in gate.description
    assert check_results(result)["one_row_per_product"].passed
    mats = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "customer_features" not in mats and "product_features" in mats
    pd.testing.assert_frame_equal(read_table(small_data_dir, "features.customer_features"), before)


def test_a_rerun_computes_only_the_snapshots_whose_inputs_changed(small_data_dir):
    keys = [k for k in feature_keys(small_data_dir) if not k.path[0].endswith("_features")]
    keys += [dg.AssetKey("customer_feature_snapshots")]
    first = run_graph(small_data_dir, START, END, selection=keys)
    assert first.success and snapshot_counts(first) == (14, 0)
    stored = read_table(small_data_dir, "features.customer_feature_snapshots")
    assert snapshot_counts(run_graph(small_data_dir, START, END, selection=keys)) == (0, 14)
    pd.testing.assert_frame_equal(read_table(small_data_dir, "features.customer_feature_snapshots"), stored)

    # a late file adds lines on 2023-03-21: the two instants after it (Monday 03-27 and the
    # latest, 04-01) are recomputed, the twelve before it reused
    raw = pd.read_csv(small_data_dir / "raw" / "transactions.csv.gz")
    late = raw[raw["invoice_ts"].str[:10] == "2023-03-21"].assign(
        invoice_id=lambda d: "LATE" + d["invoice_id"]
    )
    late.to_csv(small_data_dir / "raw" / "transactions_late.csv.gz", index=False)
    edit_sources(small_data_dir, lambda s: s["transactions"].update(path="raw/transactions*.csv.gz"))
    third = run_graph(small_data_dir, START, END, selection=keys)
    assert snapshot_counts(third) == (2, 12)
    after = read_table(small_data_dir, "features.customer_feature_snapshots")
    changed = after[after[AS_OF] > pd.Timestamp("2023-03-21")]
    assert changed[AS_OF].nunique() == 2 and changed[DIGEST].isin(stored[DIGEST]).sum() == 0


def snapshot_counts(result) -> tuple[int, int]:
    (meta,) = [
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "customer_feature_snapshots"
    ]
    return meta["snapshots_computed"].value, meta["snapshots_reused"].value
