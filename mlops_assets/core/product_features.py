"""Product features as of an instant, from order lines strictly before it, the catalog and the
inventory snapshots taken before it. A feature whose source is absent is left out."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops_assets.core.feature_registry import ENTITY, conform

DAYS_RECENT, DAYS_VELOCITY, DAYS_RETURNS, WEEKS_STOCK = 90, 28, 365, 12


def _ratio(num, den) -> np.ndarray:
    """num / den, NaN where den is not positive (never an infinity)."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)


def product_features(
    transactions: pd.DataFrame,
    products: pd.DataFrame | None,
    inventory: pd.DataFrame | None,
    as_of: pd.Timestamp,
) -> pd.DataFrame:
    """One row per product in the catalog or sold before `as_of`."""
    as_of = pd.Timestamp(as_of)
    lines = transactions.loc[
        (transactions["order_ts"] < as_of).to_numpy(),
        ["order_ts", "product_id", "quantity", "amount", "unit_price"],
    ]
    age = (as_of - lines["order_ts"]).dt.days.to_numpy()  # whole days before as_of
    qty = lines["quantity"].to_numpy(dtype=float)
    has_catalog = products is not None and len(products) > 0
    catalog = products.drop_duplicates("product_id").set_index("product_id") if has_catalog else None

    ids = pd.Index(lines["product_id"].dropna().unique().astype(object))
    if catalog is not None:
        ids = pd.Index(catalog.index.astype(object)).union(ids, sort=False)
    code = ids.get_indexer(lines["product_id"].astype(object))
    n = len(ids)

    def per_product(mask: np.ndarray, weights: np.ndarray) -> np.ndarray:
        m = mask & (code >= 0)
        return np.bincount(code[m], weights=weights[m], minlength=n)

    recent = age < DAYS_RECENT
    revenue_90 = per_product(recent & (qty > 0), lines["amount"].to_numpy(dtype=float))  # gross sales
    sold_28 = per_product((age < DAYS_VELOCITY) & (qty > 0), qty)
    sold_365 = per_product((age < DAYS_RETURNS) & (qty > 0), qty)
    returned_365 = 0.0 - per_product((age < DAYS_RETURNS) & (qty < 0), qty)
    sold_12w = per_product((age < 7 * WEEKS_STOCK) & (qty > 0), qty)

    median_price = (
        lines.loc[recent & (lines["unit_price"] > 0).to_numpy()]
        .groupby("product_id", observed=True)["unit_price"]
        .median()
    )
    out = pd.DataFrame({ENTITY["product"]: pd.array(ids, dtype="string[pyarrow]")})
    price = median_price.reindex(ids).to_numpy(dtype=float)
    sources = {"transactions"}
    if catalog is not None:
        listed = catalog.reindex(ids)
        if "price" in listed and listed["price"].notna().any():
            price = np.where(listed["price"].notna(), listed["price"].to_numpy(dtype=float), price)
        if "category" in listed and listed["category"].notna().any():
            sources.add("products")
            out["category"] = listed["category"].to_numpy()
            cat = out["category"]
            out["price_percentile_in_category"] = pd.Series(price).groupby(cat.to_numpy()).rank(pct=True)
            category_revenue = pd.Series(revenue_90).groupby(cat.to_numpy()).transform("sum").to_numpy()
            out["category_popularity"] = _ratio(category_revenue, revenue_90.sum())
            out["share_of_category_revenue_90d"] = _ratio(revenue_90, category_revenue)
        rating = listed["rating"].to_numpy(dtype=float) if "rating" in listed else np.full(n, np.nan)
    out["price"] = price
    out["sales_velocity_28d"] = sold_28 / DAYS_VELOCITY
    out["return_rate"] = _ratio(returned_365, sold_365)
    if "products" in sources:
        out["rating"] = rating
    if inventory is not None and len(inventory):
        sources.add("inventory")
        before = inventory[inventory["snapshot_date"] < as_of].sort_values("snapshot_date", kind="stable")
        on_hand = before.drop_duplicates("product_id", keep="last").set_index("product_id")["on_hand"]
        on_hand = on_hand.reindex(ids).to_numpy(dtype=float)
        out["inventory_ratio"] = _ratio(on_hand, sold_12w / WEEKS_STOCK)
        out["days_of_cover"] = _ratio(on_hand, sold_12w / (7 * WEEKS_STOCK))
    return conform(out, "product", sources)
