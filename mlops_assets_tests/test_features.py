"""Feature definitions: known answers on hand-built frames, point-in-time correctness, registry."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from mlops_assets.core import feature_registry
from mlops_assets.core.customer_features import customer_features
from mlops_assets.core.feature_registry import features_of, group_version
from mlops_assets.core.product_features import product_features

AS_OF = pd.Timestamp("2024-03-01")
CATALOG = pd.DataFrame(
    {
        "product_id": ["P1", "P2", "P3"],
        "category": ["Toys", "Books", "Books"],
        "price": [10.0, 5.0, 20.0],
        "rating": [4.5, 3.0, np.nan],
    }
)
INVENTORY = pd.DataFrame(
    {
        "snapshot_date": pd.to_datetime(["2024-02-26", "2024-03-04", "2024-02-19"]),
        "product_id": ["P1", "P1", "P2"],
        "on_hand": [12.0, 99.0, 0.0],
    }
)


def lines(*rows) -> pd.DataFrame:
    df = pd.DataFrame(
        rows, columns=["order_id", "order_ts", "customer_id", "product_id", "quantity", "amount"]
    )
    df["order_ts"] = pd.to_datetime(df["order_ts"])
    df["unit_price"] = (df["amount"] / df["quantity"]).abs()
    df["store_id"] = "S1"
    return df


TINY = lines(
    ("O1", "2024-01-01 10:00", "A", "P1", 2, 20.0),
    ("O1", "2024-01-01 10:00", "A", "P2", 1, 5.0),
    ("O2", "2024-02-01 10:00", "A", "P1", 1, 10.0),
    ("R1", "2024-02-10 09:00", "A", "P1", -1, -10.0),
    ("O3", "2024-03-05 12:00", "A", "P3", 5, 100.0),  # after as_of: invisible
    ("O4", "2023-01-15 00:00", "B", "P2", 1, 5.0),
    ("O5", "2024-02-15 08:00", None, "P2", 2, 10.0),  # a guest: no customer row, still a sale
)


def test_customer_features_known_answers():
    got = customer_features(TINY, AS_OF, CATALOG, with_clv=False).set_index("customer_id")
    assert list(got.index) == ["B", "A"]  # in the order of their first line: B's is in 2023
    a, b = got.loc["A"], got.loc["B"]
    assert a["recency_days"] == pytest.approx(28 + 14 / 24)  # Feb 1 10:00 -> Mar 1 (leap year)
    assert a["frequency"] == 2
    assert a["monetary"] == pytest.approx(25.0)  # 20 + 5 + 10 - 10
    assert a["avg_order_value"] == pytest.approx(17.5)  # 35 gross over 2 orders
    assert a["tenure_days"] == pytest.approx(59 + 14 / 24)
    assert a["avg_days_between_orders"] == pytest.approx(31.0)
    assert a["return_rate"] == pytest.approx(0.25)
    assert a["distinct_products"] == 2
    assert a["favourite_category"] == "Toys"
    assert a["favourite_category_share"] == pytest.approx(30 / 35)
    assert b["recency_days"] == pytest.approx(411.0)
    assert b["frequency"] == 0 and b["monetary"] == 0.0
    assert np.isnan(b["avg_days_between_orders"])
    assert b["favourite_category"] == "Books" and b["favourite_category_share"] == 1.0


def test_customer_features_without_catalog_leave_category_out():
    got = customer_features(TINY, AS_OF, None, with_clv=False)
    assert "favourite_category" not in got and "recency_days" in got


def test_product_features_known_answers():
    got = product_features(TINY, CATALOG, INVENTORY, AS_OF).set_index("product_id")
    p1, p2, p3 = got.loc["P1"], got.loc["P2"], got.loc["P3"]
    assert p1["category"] == "Toys" and p1["price"] == 10.0 and p1["rating"] == 4.5
    assert p2["price_percentile_in_category"] == 0.5 and p3["price_percentile_in_category"] == 1.0
    assert p1["category_popularity"] == pytest.approx(30 / 45)
    assert p2["category_popularity"] == pytest.approx(15 / 45) == pytest.approx(p3["category_popularity"])
    assert p2["share_of_category_revenue_90d"] == 1.0 and p3["share_of_category_revenue_90d"] == 0.0
    assert p1["sales_velocity_28d"] == 0.0  # Feb 1 10:00 is 28.6 days back; Feb 10 is a return
    assert p2["sales_velocity_28d"] == pytest.approx(2 / 28)  # the guest's two units count
    assert p1["return_rate"] == pytest.approx(1 / 3)
    assert p2["return_rate"] == 0.0 and np.isnan(p3["return_rate"])
    assert p1["inventory_ratio"] == pytest.approx(12 / (3 / 12))  # the Mar 4 count is the future
    assert p1["days_of_cover"] == pytest.approx(12 / (3 / 84))
    assert p2["inventory_ratio"] == 0.0 and np.isnan(p3["inventory_ratio"])


def test_product_features_without_catalog_or_inventory():
    got = product_features(TINY, None, None, AS_OF)
    assert set(got["product_id"]) == {"P1", "P2"}  # P3 is only sold after as_of
    assert "category" not in got and "inventory_ratio" not in got
    assert got.set_index("product_id").loc["P2", "price"] == 5.0  # median selling price


def test_no_infinity_when_nothing_sold():
    got = product_features(TINY.iloc[:0], CATALOG, INVENTORY, AS_OF)
    numeric = got.select_dtypes("number")
    assert not np.isinf(numeric.to_numpy()).any()


@pytest.mark.parametrize("group", ["customer", "product"])
def test_features_as_of_t_ignore_lines_at_or_after_t(small_lines, group):
    tx, catalog, inventory = small_lines
    as_of = pd.Timestamp("2023-03-06")

    def compute(frame):
        if group == "customer":
            return customer_features(frame, as_of, catalog)
        return product_features(frame, catalog, inventory, as_of)

    before = compute(tx)
    later = tx["order_ts"] >= as_of
    changed = tx.copy()
    changed.loc[later, "amount"] *= 7  # rewrite history after T
    changed.loc[later, "quantity"] = -changed.loc[later, "quantity"]
    extra = tx[~later].head(50).assign(order_ts=as_of, order_id="NEW", customer_id="C-NEW")  # exactly at T
    changed = pd.concat([changed, extra], ignore_index=True)
    pd.testing.assert_frame_equal(compute(changed), before)
    assert before.notna().any().all()  # every feature was really computed, CLV included


def test_every_output_column_is_registered_with_its_dtype(small_lines):
    tx, catalog, inventory = small_lines
    as_of = pd.Timestamp("2023-04-01")
    for group, table in [
        ("customer", customer_features(tx, as_of, catalog)),
        ("product", product_features(tx, catalog, inventory, as_of)),
    ]:
        registered = {f.name: f.dtype for f in features_of(group)}
        assert list(table.columns[1:]) == list(registered)
        for name, dtype in registered.items():
            assert str(table[name].dtype) == ("string" if dtype == "string" else dtype), name


def test_a_changed_definition_is_a_new_group_version(monkeypatch):
    customer, product = group_version("customer"), group_version("product")
    bumped = tuple(
        dataclasses.replace(f, version=2) if f.name == "monetary" else f for f in feature_registry.FEATURES
    )
    monkeypatch.setattr(feature_registry, "FEATURES", bumped)
    assert group_version("customer") != customer
    assert group_version("product") == product  # only the changed group moves
