"""Product features as of an instant, from order lines strictly before it, the catalog and the
inventory snapshots taken before it. A feature whose source is absent is left out."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops_assets.core.feature_registry import ENTITY, conform
from mlops_assets.core.lines import LineCodes, refactorize

DAYS_RECENT, DAYS_VELOCITY, DAYS_RETURNS, WEEKS_STOCK = 90, 28, 365, 12
DAY_NS = 86_400 * 10**9


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
    codes: LineCodes | None = None,
) -> pd.DataFrame:
    """One row per product in the catalog or sold before `as_of` (catalog order, then the
    others in order of their first line). `codes`: the lines prepared once, for many instants."""
    as_of = pd.Timestamp(as_of)
    codes = codes if codes is not None else LineCodes.of(transactions)
    keep = codes.ts < as_of.value
    age = (as_of.value - codes.ts[keep]) // DAY_NS  # whole days before as_of
    qty, amount = codes.quantity[keep], codes.amount[keep]
    has_catalog = products is not None and len(products) > 0
    catalog = products.drop_duplicates("product_id").set_index("product_id") if has_catalog else None

    line_product = codes.product[keep]
    _, seen = refactorize(line_product[line_product >= 0])  # sold before as_of, first line first
    ids = pd.Index(codes.products[seen], dtype=object)
    if catalog is not None:
        ids = pd.Index(catalog.index.astype(object)).union(ids, sort=False)
    position = ids.get_indexer(pd.Index(codes.products, dtype=object))  # per product code
    code = np.where(line_product >= 0, position[line_product.clip(0)], -1) if len(position) else line_product
    n = len(ids)

    def per_product(mask: np.ndarray, weights: np.ndarray) -> np.ndarray:
        m = mask & (code >= 0)
        return np.bincount(code[m], weights=weights[m], minlength=n)

    recent = age < DAYS_RECENT
    revenue_90 = per_product(recent & (qty > 0), amount)  # gross sales
    sold_28 = per_product((age < DAYS_VELOCITY) & (qty > 0), qty)
    sold_365 = per_product((age < DAYS_RETURNS) & (qty > 0), qty)
    returned_365 = 0.0 - per_product((age < DAYS_RETURNS) & (qty < 0), qty)
    sold_12w = per_product((age < 7 * WEEKS_STOCK) & (qty > 0), qty)

    unit_price = codes.unit_price[keep]
    priced = recent & (unit_price > 0) & (code >= 0)
    median_price = pd.Series(unit_price[priced]).groupby(code[priced]).median()
    out = pd.DataFrame({ENTITY["product"]: pd.array(ids, dtype="string[pyarrow]")})
    price = np.full(n, np.nan)
    price[median_price.index.to_numpy()] = median_price.to_numpy(dtype=float)
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
