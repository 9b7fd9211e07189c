"""Customer features as of an instant, from order lines strictly before it.

One pass of integer-coded aggregations (np.bincount over factorized ids) rather than a string
groupby per feature: the whole table costs a small multiple of one minimal RFM groupby.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops_assets.core import clv
from mlops_assets.core.feature_registry import ENTITY, conform
from mlops_assets.core.lines import LineCodes, refactorize

YEAR = pd.Timedelta(days=365)
DAY_NS = 86_400 * 10**9


def customer_features(
    transactions: pd.DataFrame,
    as_of: pd.Timestamp,
    products: pd.DataFrame | None = None,
    clv_model: clv.CLVModel | None = None,
    with_clv: bool = True,
    horizon_days: float = 365.0,
    days: clv.PurchaseDays | None = None,
    codes: LineCodes | None = None,
) -> pd.DataFrame:
    """One row per customer seen before `as_of` (guest lines have no customer and are left out),
    in the order of their first line. `days` (clv.PurchaseDays) and `codes` (LineCodes): the
    lines prepared once, for many instants.

    `clv_model` reuses a fitted model; otherwise, with `with_clv`, one is fitted on the same
    history (still strictly before as_of). Category features need `products` with a category.
    """
    as_of = pd.Timestamp(as_of)
    codes = codes if codes is not None else LineCodes.of(transactions)
    keep = (codes.ts < as_of.value) & (codes.customer >= 0)
    # integer codes refactorized in first-line order: the same customers, in the same order,
    # as factorizing the ids of these lines
    cust, seen = refactorize(codes.customer[keep])
    customers = codes.customers[seen]
    n = len(customers)
    ts, qty, amount = codes.ts[keep], codes.quantity[keep], codes.amount[keep]
    buy = qty > 0
    since_year = ts >= (as_of - YEAR).value

    # purchase orders: the first purchase line of each order id stands for the order
    order = codes.order[keep]
    first_line = np.zeros(len(ts), dtype=bool)
    buy_idx = np.flatnonzero(buy)
    first_line[buy_idx[~pd.Series(order[buy_idx]).duplicated(keep="first").to_numpy()]] = True

    def per_customer(mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        w = None if weights is None else weights[mask]
        return np.bincount(cust[mask], weights=w, minlength=n)

    orders = per_customer(first_line)
    gross = per_customer(buy, amount)
    first_ts = _extreme(cust, ts, np.ones(len(ts), bool), n, "min")
    first_buy = _extreme(cust, ts, buy, n, "min")
    last_buy = _extreme(cust, ts, buy, n, "max")
    bought_units = per_customer(buy, qty)
    returned_units = 0.0 - per_customer(~buy, qty)  # 0.0 - x: no negative zeros
    product = codes.product[keep]
    # (customer, product) pairs; product + 1 keeps a missing product (-1) off its neighbours
    pairs = cust.astype(np.int64) * (len(codes.products) + 1) + (product + 1)
    distinct = per_customer(buy & ~pd.Series(pairs).duplicated(keep="first").to_numpy())

    with np.errstate(divide="ignore", invalid="ignore"):
        out = pd.DataFrame(
            {
                ENTITY["customer"]: pd.array(customers, dtype="string[pyarrow]"),
                "recency_days": (as_of.value - last_buy) / DAY_NS,
                "frequency": per_customer(first_line & since_year).astype("int64"),
                "monetary": per_customer(since_year, amount),
                "avg_order_value": np.where(orders > 0, gross / orders, np.nan),
                "tenure_days": (as_of.value - first_ts) / DAY_NS,
                "avg_days_between_orders": np.where(
                    orders > 1, (last_buy - first_buy) / DAY_NS / (orders - 1), np.nan
                ),
                "return_rate": np.where(bought_units > 0, returned_units / bought_units, np.nan),
                "distinct_products": distinct.astype("int64"),
            }
        )
    sources = {"transactions"}
    if products is not None and "category" in products and products["category"].notna().any():
        sources.add("products")
        fav, share = _favourite_category(product, codes.products, cust, n, buy, amount, products)
        out["favourite_category"], out["favourite_category_share"] = fav, share
    if clv_model is not None or with_clv:
        out["clv_12m"] = customer_clv(
            transactions, as_of, out[ENTITY["customer"]], clv_model, horizon_days, days
        )
    else:
        out["clv_12m"] = np.nan
    return conform(out, "customer", sources)


def _extreme(codes: np.ndarray, values: np.ndarray, mask: np.ndarray, n: int, how: str) -> np.ndarray:
    """Min or max of int64 `values` per code over `mask`; NaN where a code has none."""
    ufunc, empty = (
        (np.minimum, np.iinfo(np.int64).max) if how == "min" else (np.maximum, np.iinfo(np.int64).min)
    )
    picked = np.full(n, empty, dtype=np.int64)
    ufunc.at(picked, codes[mask], values[mask])
    return np.where(picked == empty, np.nan, picked.astype(float))


def _favourite_category(product, product_ids, cust, n, buy, amount, products) -> tuple[pd.Series, np.ndarray]:
    catalog = products.dropna(subset=["category"]).drop_duplicates("product_id")
    # map the few distinct products to categories, then spread by code (no per-line lookup)
    per_product = pd.Index(catalog["product_id"].astype(object)).get_indexer(
        pd.Index(product_ids).astype(object)
    )
    cat_of_catalog, names = pd.factorize(catalog["category"])
    cat_of_product = np.where(per_product >= 0, cat_of_catalog[per_product.clip(0)], -1)
    cat = (
        np.where(product >= 0, cat_of_product[product.clip(0)], -1)
        if len(cat_of_product)
        else np.full(len(product), -1)
    )
    known = buy & (cat >= 0)
    k = max(len(names), 1)
    spend = np.bincount(cust[known] * k + cat[known], weights=amount[known], minlength=n * k).reshape(n, k)
    total = spend.sum(axis=1)
    best = spend.argmax(axis=1)
    fav = pd.Series(np.asarray(names, dtype=object)[best] if len(names) else None, dtype="string[pyarrow]")
    fav[total <= 0] = pd.NA
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(total > 0, spend.max(axis=1) / total, np.nan)
    return fav, share


def customer_clv(
    transactions: pd.DataFrame,
    as_of: pd.Timestamp,
    customers: pd.Series,
    model: clv.CLVModel | None = None,
    horizon_days: float = 365.0,
    days: clv.PurchaseDays | None = None,
) -> np.ndarray:
    """Predicted gross revenue over the horizon for each customer (0 when never purchased;
    NaN for everyone while the history is too short to fit the models)."""
    summary = clv.rfm_summary(transactions, as_of, days)
    if model is None and not clv.can_fit(summary):
        return np.full(len(customers), np.nan)
    model = model or clv.fit_clv(summary)
    predicted = model.predict(summary, horizon_days)
    values = predicted.reindex(pd.Index(customers.astype(object)))
    return values.fillna(0.0).to_numpy(dtype=float)
