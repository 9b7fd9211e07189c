"""Each gate fails on a corrupted input, and its message names the column and the rule."""

import pandas as pd

from mlops_assets.checks.gates import Gate
from mlops_assets.core import ingestion, schemas

GATE = Gate("matches_source_schema", "bronze_transactions", "test gate")
MAPPING = {
    "order_id": "inv",
    "order_ts": "ts",
    "customer_id": "cust",
    "product_id": "sku",
    "quantity": "qty",
    "unit_price": "price",
}


def source(tmp_path, df: pd.DataFrame) -> tuple[ingestion.RawSource, pd.DataFrame]:
    df.to_csv(tmp_path / "t.csv", index=False)
    raw = ingestion.read_source("transactions", [tmp_path / "t.csv"], {}, MAPPING)
    return raw, ingestion.typed_frame("transactions", raw)


def lines(n=200) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "inv": [f"O{i}" for i in range(n)],
            "ts": pd.date_range("2024-01-01", periods=n, freq="h").strftime("%Y-%m-%d %H:%M:%S"),
            "cust": [f"C{i % 17}" for i in range(n)],
            "sku": [f"P{i % 5}" for i in range(n)],
            "qty": [1 + i % 3 for i in range(n)],
            "price": [9.99] * n,
        }
    )


def schema_result(raw, typed, max_bad=0.01):
    schema = schemas.raw_schema("transactions", raw.mapped, raw.frame, typed, max_bad)
    return GATE.validate(schema, raw.frame, "t.csv")


def test_clean_source_passes(tmp_path):
    raw, typed = source(tmp_path, lines())
    assert schema_result(raw, typed).passed


def test_renamed_customer_id_fails_naming_the_column(tmp_path):
    raw, typed = source(tmp_path, lines().rename(columns={"cust": "customer_no"}))
    result = schema_result(raw, typed)
    assert not result.passed
    assert "column 'customer_id' is missing from t.csv" in result.description
    assert "column_in_dataframe" in result.description


def test_price_column_of_strings_fails_naming_column_and_rule(tmp_path):
    df = lines().assign(price=[f"{p:.2f} EUR" for p in lines()["price"]])
    raw, typed = source(tmp_path, df)
    result = schema_result(raw, typed)
    assert not result.passed
    assert "column 'unit_price' breaks rule parses_as_float in 200 of 200 rows" in result.description
    assert "'9.99 EUR'" in result.description


def test_reformatted_timestamps_fail(tmp_path):
    df = lines().assign(ts=[f"T+{i}h" for i in range(200)])  # an export switched to relative times
    raw, typed = source(tmp_path, df)
    result = schema_result(raw, typed)
    assert not result.passed and "column 'order_ts' breaks rule parses_as_datetime" in result.description


def test_a_few_bad_values_are_rows_to_quarantine_not_a_broken_column(tmp_path):
    df = lines().astype({"price": object})
    df.loc[7, "price"] = "n/a price"  # 1 of 200 = 0.5%, under the 1% allowance
    raw, typed = source(tmp_path, df)
    assert schema_result(raw, typed).passed
    assert schema_result(raw, typed, max_bad=0.001).passed is False


def test_null_explosion_fails_naming_the_column(tmp_path):
    df = lines().astype({"sku": object})
    df.loc[df.index[:120], "sku"] = None
    raw, typed = source(tmp_path, df)
    gate = Gate("null_rates_within_limits", "bronze_transactions", "")
    result = gate.validate(schemas.null_rate_schema({"product_id": 0.02, "customer_id": 0.6}), typed, "t.csv")
    assert not result.passed
    assert "column 'product_id' breaks rule null_rate<=0.02 (null share 60.0%)" in result.description
    assert "customer_id" not in result.description


def test_silver_schema_catches_values_out_of_range():
    silver = pd.DataFrame(
        {
            "order_id": ["a", "b"],
            "order_ts": pd.to_datetime(["2024-01-02", "2024-01-03"]),
            "product_id": ["p", "p"],
            "store_id": ["s", "s"],
            "quantity": [1.0, 0.0],
            "unit_price": [2.0, -1.0],
            "amount": [2.0, 0.0],
        }
    )
    schema = schemas.silver_schema(pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01"), 1000)
    result = Gate("silver_values_in_range", "silver_transactions", "").validate(schema, silver, "silver")
    assert not result.passed
    assert "column 'quantity' breaks rule not_equal_to(0)" in result.description
    assert "column 'unit_price' breaks rule greater_than(0)" in result.description


def test_duplicate_product_ids_in_catalog_fail():
    catalog = pd.DataFrame({"product_id": ["P1", "P1"], "price": [1.0, 2.0], "rating": [4.0, 4.5]})
    result = Gate("products_values_valid", "bronze_products", "").validate(
        schemas.catalog_schema(), catalog, "p.csv"
    )
    assert not result.passed and "column 'product_id' breaks rule field_uniqueness" in result.description
