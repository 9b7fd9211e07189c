"""Whole runs: the shipped sample in a temp MLOPS_DATA_DIR, and real bike-shop order lines."""

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlops_assets.settings import DEFAULT_DATA_DIR
from mlops_assets_tests.conftest import read_table, run_graph

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.slow
def test_whole_sample_end_to_end(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(DEFAULT_DATA_DIR / "raw", data / "raw")
    shutil.copy(DEFAULT_DATA_DIR / "sources.yaml", data / "sources.yaml")
    result = run_graph(data, "2023-01-01", "2024-12-31")
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    source_rows = len(pd.read_csv(data / "raw/transactions.csv.gz", usecols=[0]))
    silver = read_table(data, "silver.silver_transactions")
    quarantined = read_table(data, "silver.quarantined_transactions")
    assert len(silver) + len(quarantined) == source_rows == 200_000
    assert 0.003 < len(quarantined) / source_rows < 0.008  # the generator's ~0.5% dirt
    assert silver["order_ts"].between("2023-01-01", "2025-01-01").all()
    assert (silver["quantity"] < 0).sum() > 1000  # returns stay valid
    assert read_table(data, "quality.data_quality_report")["silver_rows"].sum() == len(silver)


@pytest.mark.slow
def test_real_bike_sales_mapped_by_sources_yaml(tmp_path):
    data = tmp_path / "bikes"
    (data / "raw").mkdir(parents=True)
    shutil.copy(FIXTURES / "bike_sales_sample.csv", data / "raw")
    spec = {
        "transactions": {
            "path": "raw/bike_sales_sample.csv",
            "read": {"date_format": "%Y-%m-%d"},
            "columns": {
                "order_id": "order_id",
                "order_ts": "order_date",
                "customer_id": "bikeshop_name",
                "product_id": "model",
                "quantity": "quantity",
                "amount": "total_price",
            },
        },
        "window": {"start_date": "2011-01-01", "end_date": "2015-12-31"},
    }
    (data / "sources.yaml").write_text(yaml.safe_dump(spec))
    result = run_graph(data, "2011-01-01", "2015-12-31")
    assert result.success
    silver = read_table(data, "silver.silver_transactions")
    quarantined = read_table(data, "silver.quarantined_transactions")
    assert len(silver) + len(quarantined) == 2_466
    assert silver["customer_id"].nunique() == 30  # bike shops
    assert silver["store_id"].eq("ALL").all()  # no store column: one store
    raw = pd.read_csv(FIXTURES / "bike_sales_sample.csv")
    # unit price derived from the line total matches the file's own price column
    merged = silver.merge(
        raw, left_on=["order_id", "product_id"], right_on=[raw["order_id"].astype(str), "model"]
    )
    assert (merged["unit_price"] == merged["price"]).all()
