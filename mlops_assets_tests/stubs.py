"""Small synthetic upstream tables for asset tests that start in the middle of the graph."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd

from mlops_assets.core.schemas import PARTITION_COLUMN


def upstream(name: str, group: str, frame: pd.DataFrame) -> dg.AssetsDefinition:
    """Stands in for the real upstream table (built by the ingestion / feature assets)."""

    @dg.asset(name=name, metadata={"schema": group})
    def _table() -> pd.DataFrame:
        return frame

    return _table


def lines(start: str, days: int, per_day: int = 60, seed: int = 0, price_scale: float = 1.0) -> pd.DataFrame:
    """Silver-like order lines: quantity, price, amount, store, product, customer, hour."""
    rng = np.random.default_rng(seed)
    n = days * per_day
    day = pd.Timestamp(start) + pd.to_timedelta(np.repeat(np.arange(days), per_day), unit="D")
    ts = day + pd.to_timedelta(rng.integers(9 * 3600, 21 * 3600, n), unit="s")
    quantity = (1 + rng.poisson(0.6, n)).astype(float)
    customers = [f"C{i:04d}" for i in rng.integers(0, 500, n)]
    price = np.round(rng.lognormal(np.log(20), 0.5, n) * price_scale, 2)
    return pd.DataFrame(
        {
            "order_id": [f"O{i:06d}" for i in range(n)],
            "order_ts": ts,
            "customer_id": np.where(rng.random(n) < 0.15, None, customers),
            "product_id": [f"P{i:03d}" for i in rng.integers(0, 40, n)],
            "store_id": rng.choice(["S01", "S02", "S03"], n, p=[0.5, 0.3, 0.2]),
            "quantity": quantity,
            "unit_price": price,
            "amount": quantity * price,
            PARTITION_COLUMN: day,
        }
    )


def product_features(seed: int = 0, products: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "product_id": [f"P{i:03d}" for i in range(products)],
            "category": rng.choice(["Grocery", "Home", "Toys"], products),
            "price": rng.lognormal(np.log(20), 0.5, products),
            "units_sold": rng.poisson(50, products).astype(float),
            "rating": rng.uniform(2, 5, products),
        }
    )
