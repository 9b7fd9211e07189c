"""Product features as of an instant, from order lines strictly before it, the catalog and the
inventory snapshots taken before it. A feature whose source is absent is left out.

The lines are reduced once to a row per (product, day) in the engine (core/line_features.py);
the features of an instant read the days before it, a row per product back.
"""

from __future__ import annotations

import ibis
import numpy as np
import pandas as pd

from mlops_assets.core import engine
from mlops_assets.core.feature_registry import ENTITY, conform
from mlops_assets.core.line_features import DailyTables, before

DAYS_RECENT, DAYS_VELOCITY, DAYS_RETURNS, WEEKS_STOCK = 90, 28, 365, 12


def _ratio(num, den) -> np.ndarray:
    """num / den, NaN where den is not positive (never an infinity)."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _window_sums(days: ibis.Table, as_of: pd.Timestamp) -> pd.DataFrame:
    """Per product sold before as_of: its first line's time, and the windowed sums."""
    days = before(days, as_of)

    def last(n: int, column: str) -> ibis.Scalar:
        since = (as_of - pd.Timedelta(days=n)).to_pydatetime()
        return days[column].sum(where=days.day >= since).cast("float64")

    per = days.group_by("product_id").aggregate(
        first_ts=days.first_ts.min(),
        revenue_90=last(DAYS_RECENT, "gross"),
        sold_28=last(DAYS_VELOCITY, "sold"),
        sold_365=last(DAYS_RETURNS, "sold"),
        returned_365=last(DAYS_RETURNS, "returned"),
        sold_12w=last(7 * WEEKS_STOCK, "sold"),
    )
    per = engine.to_frame(per.order_by(["first_ts", "product_id"]))
    sums = ["revenue_90", "sold_28", "sold_365", "returned_365", "sold_12w"]
    per[sums] = per[sums].fillna(0.0)  # a sum over no rows is null in SQL, zero here
    return per.set_index(per["product_id"].astype(object))


def _median_prices(prices: ibis.Table, as_of: pd.Timestamp) -> pd.Series:
    """Median selling price per product over the recent lines, from the count of lines at each
    price."""
    recent = before(prices, as_of, DAYS_RECENT)
    counts = engine.to_frame(recent.group_by(["product_id", "unit_price"]).aggregate(n=recent.lines.sum()))
    return median_of_counts(counts, "product_id", "unit_price")


def median_of_counts(counts: pd.DataFrame, key: str, value: str) -> pd.Series:
    """Per `key`, the median of `value` (the mean of the two middle values for an even count, as
    pandas' median) from `counts`: one row per (key, value) with `n`, the lines at that value."""
    if counts.empty:
        return pd.Series(dtype=float)
    counts = counts.sort_values([key, value], kind="stable")
    total = counts.groupby(key)["n"].transform("sum").to_numpy()
    upto = counts.groupby(key)["n"].cumsum().to_numpy()
    below = upto - counts["n"].to_numpy()
    price = counts[value].to_numpy(dtype=float)
    # the values at 0-based positions (total-1)//2 and total//2 of the key's sorted lines
    low = (below <= (total - 1) // 2) & ((total - 1) // 2 < upto)
    high = (below <= total // 2) & (total // 2 < upto)
    ids = counts[key].astype(object).to_numpy()
    lows = pd.Series(price[low], index=ids[low])
    highs = pd.Series(price[high], index=ids[high])
    return (lows + highs) / 2


def product_features(
    transactions: pd.DataFrame | ibis.Table | None,
    products: pd.DataFrame | None,
    inventory: pd.DataFrame | None,
    as_of: pd.Timestamp,
    daily: DailyTables | None = None,
) -> pd.DataFrame:
    """One row per product in the catalog or sold before `as_of` (catalog order, then the
    others in order of their first line, then by id). `daily`: the lines' reduced tables, built
    once for many instants (as_of must then be a midnight)."""
    as_of = pd.Timestamp(as_of)
    inventory_as_of = as_of
    if daily is None:
        daily, as_of = DailyTables.aligned(transactions, products, as_of)
    per = _window_sums(daily.products, as_of)
    has_catalog = products is not None and len(products) > 0
    catalog = products.drop_duplicates("product_id").set_index("product_id") if has_catalog else None
    ids = pd.Index(per.index, dtype=object)
    if catalog is not None:
        ids = pd.Index(catalog.index.astype(object)).union(ids, sort=False)
    n = len(ids)
    sums = ["revenue_90", "sold_28", "sold_365", "returned_365", "sold_12w"]
    sold = per[sums].reindex(ids).fillna(0.0)
    revenue_90 = sold["revenue_90"].to_numpy(dtype=float)
    out = pd.DataFrame({ENTITY["product"]: pd.array(ids, dtype="string[pyarrow]")})
    medians = _median_prices(daily.prices, as_of) if daily.prices is not None else pd.Series(dtype=float)
    price = medians.reindex(ids).to_numpy(dtype=float)
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
    out["sales_velocity_28d"] = sold["sold_28"].to_numpy(dtype=float) / DAYS_VELOCITY
    out["return_rate"] = _ratio(sold["returned_365"], sold["sold_365"])
    if "products" in sources:
        out["rating"] = rating
    if inventory is not None and len(inventory):
        sources.add("inventory")
        before_as_of = inventory[inventory["snapshot_date"] < inventory_as_of]
        before_as_of = before_as_of.sort_values("snapshot_date", kind="stable")
        on_hand = before_as_of.drop_duplicates("product_id", keep="last").set_index("product_id")["on_hand"]
        on_hand = on_hand.reindex(ids).to_numpy(dtype=float)
        sold_12w = sold["sold_12w"].to_numpy(dtype=float)
        out["inventory_ratio"] = _ratio(on_hand, sold_12w / WEEKS_STOCK)
        out["days_of_cover"] = _ratio(on_hand, sold_12w / (7 * WEEKS_STOCK))
    return conform(out, "product", sources)
