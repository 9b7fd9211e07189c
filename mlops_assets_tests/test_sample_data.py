"""The seeded sample retailer: reproducible, realistic in shape, with a sprinkle of dirt."""

import hashlib
import io

import numpy as np
import pandas as pd
import pytest

from mlops_assets.sample_data import generate
from mlops_assets.settings import DEFAULT_DATA_DIR


@pytest.fixture(scope="module")
def sample():
    return generate(lines=200_000, seed=7)


def _csv_digest(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    return hashlib.sha256(buf.getvalue().encode()).hexdigest()


def test_committed_sample_is_reproduced_exactly_from_its_seed(sample):
    committed = pd.read_csv(DEFAULT_DATA_DIR / "raw/transactions.csv.gz", dtype=str, keep_default_na=False)
    regenerated = pd.read_csv(
        io.StringIO(sample.transactions.to_csv(index=False)), dtype=str, keep_default_na=False
    )
    assert _csv_digest(committed) == _csv_digest(regenerated)
    products = pd.read_csv(DEFAULT_DATA_DIR / "raw/products.csv")
    assert products["sku"].tolist() == sample.products["sku"].tolist()


def test_seed_changes_the_data():
    a, b = generate(lines=3_000, seed=1, end="2023-06-30"), generate(lines=3_000, seed=2, end="2023-06-30")
    assert len(a.transactions) == len(b.transactions) == 3_000
    assert _csv_digest(a.transactions) != _csv_digest(b.transactions)


def test_shape_of_a_real_retailer(sample):
    tx = sample.transactions
    ts = pd.to_datetime(tx["invoice_ts"])
    clean = tx[(ts < "2025-01-01") & (tx["unit_price"] > 0) & (tx["qty"].abs() < 1000)]
    cts = pd.to_datetime(clean["invoice_ts"])
    assert len(tx) == 200_000
    assert (cts.max() - cts.min()).days >= 729  # two years
    assert set(tx["store"]) == {"S01", "S02", "S03", "S04", "WEB"}
    assert sample.products["category"].nunique() == 8 and len(sample.products) == 200
    assert set(sample.products["price_tier"]) == {"budget", "standard", "premium"}
    assert tx["customer"].nunique() > 5_000
    assert 0.05 < tx["customer"].isna().mean() < 0.3  # guest orders
    # heterogeneous customers: a long tail of one-off buyers and some very loyal ones
    orders_per_customer = clean.groupby("customer")["invoice_id"].nunique()
    assert orders_per_customer.quantile(0.5) <= 3 and orders_per_customer.quantile(0.99) >= 15
    revenue = (clean["qty"] * clean["unit_price"]).groupby(cts.dt.to_period("M")).sum()
    assert revenue["2024"].sum() > 1.15 * revenue["2023"].sum()  # trend
    assert revenue["2024-12"] > 1.2 * revenue["2024-01":"2024-11"].mean()  # holiday peak
    by_weekday = clean.groupby(cts.dt.dayofweek)["invoice_id"].nunique()
    assert by_weekday[5] > 1.3 * by_weekday[1]  # busy Saturdays


def test_returns_reverse_earlier_purchases(sample):
    tx = sample.transactions
    returns = tx[tx["qty"] < 0]
    assert 0.02 < len(returns) / len(tx) < 0.05
    buys = tx[tx["qty"] > 0]
    matched = returns.merge(buys, on=["customer", "sku"], suffixes=("_r", "_b"))
    earlier = matched[pd.to_datetime(matched["invoice_ts_b"]) < pd.to_datetime(matched["invoice_ts_r"])]
    assert (
        earlier.drop_duplicates(["invoice_id_r", "sku"]).shape[0] >= 0.95 * returns["customer"].notna().sum()
    )


def test_weekly_inventory_snapshots(sample):
    inv = sample.inventory
    assert inv["snapshot_date"].str.fullmatch(r"\d{8}").all()
    assert inv.groupby("snapshot_date").size().eq(200).all()
    assert inv["snapshot_date"].nunique() >= 104
    assert (inv["units_on_hand"] == 0).mean() < 0.2


def test_about_half_a_percent_of_dirt(sample):
    tx = sample.transactions
    dup = tx.duplicated().sum()
    bad = dup + (tx["unit_price"] <= 0).sum() + tx["sku"].isna().sum() + (tx["qty"].abs() > 1000).sum()
    bad += (pd.to_datetime(tx["invoice_ts"]) > "2025-01-01").sum()
    assert 0.003 < bad / len(tx) < 0.008
    assert dup > 0 and tx["sku"].isna().sum() > 0 and (tx["unit_price"] == 0).sum() > 0


def test_next_period_writes_a_shifted_new_file_and_extends_the_window(tmp_path):
    from mlops_assets.sample_data.__main__ import main as cli
    from mlops_assets.sample_data.next_period import Shift, next_period
    from mlops_assets.settings import load_settings

    plain, drifted = tmp_path / "plain", tmp_path / "drifted"
    for out in (plain, drifted):
        cli(
            [
                "--lines",
                "6000",
                "--seed",
                "3",
                "--out",
                str(out),
                "--start",
                "2023-01-01",
                "--end",
                "2023-03-31",
            ]
        )
    same = pd.read_csv(next_period(plain, 14, 3, Shift()))
    moved = pd.read_csv(next_period(drifted, 14, 3, Shift(1.3, 0.5, "Electronics")))
    settings = load_settings(drifted)  # the extended sources.yaml is valid and sees both files
    assert settings.window.end_date.isoformat() == "2023-04-14" and len(settings.files("transactions")) == 2
    old = pd.read_csv(drifted / "raw" / "transactions.csv.gz")
    assert not set(moved["invoice_id"]) & set(old["invoice_id"])  # no order id collides with the past
    days = same["invoice_ts"].str[:10]
    assert days[days <= "2023-04-14"].min() == "2023-04-01"  # the days after the old window
    catalog = pd.read_csv(drifted / "raw" / "products.csv").set_index("sku")["category"]
    share = {
        name: frame["sku"].map(catalog).eq("Electronics").mean()
        for name, frame in (("same", same), ("moved", moved))
    }
    assert share["moved"] < 0.3 * share["same"]
    kept = moved[~moved["sku"].map(catalog).eq("Electronics")]
    common = same.merge(kept, on=["invoice_ts", "sku", "qty"], suffixes=("", "_moved"))
    assert np.allclose(common["unit_price_moved"], np.round(common["unit_price"] * 1.3, 2))
    assert moved["customer"].str.startswith("N").mean() > 0.3


def test_a_log_above_the_shard_size_is_written_in_customer_shards(tmp_path):
    """Each shard is its own customers' lines over the whole window; together they are the
    requested lines, with no order or customer in two shards, and sources.yaml reads them all."""
    from mlops_assets.sample_data.__main__ import main as cli
    from mlops_assets.settings import load_settings

    cli(["--lines", "30000", "--shard-lines", "12000", "--seed", "5", "--out", str(tmp_path)])
    files = load_settings(tmp_path).files("transactions")
    assert [f.name for f in files] == [f"transactions-00{k}.csv.gz" for k in range(3)]
    shards = [pd.read_csv(f, dtype={"customer": str}) for f in files]
    assert sum(len(s) for s in shards) == 30_000
    orders = [set(s["invoice_id"].str.replace("^RT", "SO", regex=True)) for s in shards]
    customers = [set(s["customer"].dropna()) for s in shards]
    for a in range(3):
        assert len(customers[a]) > 100 and pd.to_datetime(shards[a]["invoice_ts"]).dt.year.nunique() >= 2
        for b in range(a + 1, 3):
            assert not orders[a] & orders[b] and not customers[a] & customers[b]
