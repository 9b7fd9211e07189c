"""The numpy implementations of the customer and product features as they were before the
lines moved into the engine (core/line_features.py): the reference the engine's features are held
to in test_line_engine.py. Kept as they were but for imports; not used by the package."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlops_assets.core import clv
from mlops_assets.core.clv import WEEK
from mlops_assets.core.feature_registry import ENTITY, conform

DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class LineCodes:
    """The lines' ids as integer codes, their numbers as arrays."""

    customer: np.ndarray  # code per line, -1 for a guest line
    customers: np.ndarray  # customer id per code
    order: np.ndarray
    product: np.ndarray  # code per line, -1 for a missing product id
    products: np.ndarray
    ts: np.ndarray  # order_ts as int64 nanoseconds
    quantity: np.ndarray
    amount: np.ndarray
    unit_price: np.ndarray | None  # None when the lines have no unit_price

    @classmethod
    def of(cls, transactions: pd.DataFrame) -> LineCodes:
        customer, customers = pd.factorize(transactions["customer_id"])
        product, products = pd.factorize(transactions["product_id"])
        return cls(
            customer=customer,
            customers=np.asarray(customers, dtype=object),
            order=pd.factorize(transactions["order_id"])[0],
            product=product,
            products=np.asarray(products, dtype=object),
            ts=transactions["order_ts"].to_numpy(dtype="datetime64[ns]").view("int64"),
            quantity=transactions["quantity"].to_numpy(dtype=float),
            amount=transactions["amount"].to_numpy(dtype=float),
            unit_price=transactions["unit_price"].to_numpy(dtype=float)
            if "unit_price" in transactions
            else None,
        )


def refactorize(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes of a subset renumbered in order of first appearance, and the original code of each."""
    return pd.factorize(codes)


class PurchaseDays:
    """Every customer's purchase days and their revenue, sorted by customer and day."""

    def __init__(self, transactions: pd.DataFrame):
        lines = transactions[(transactions["quantity"] > 0) & transactions["customer_id"].notna()]
        codes, self.customers = pd.factorize(lines["customer_id"], sort=True)
        day = lines["order_ts"].dt.floor("D").to_numpy().view("int64")
        frame = pd.DataFrame({"c": codes, "d": day, "a": lines["amount"].to_numpy(dtype=float)})
        daily = frame.groupby(["c", "d"], sort=True)["a"].sum()
        self.code = daily.index.get_level_values(0).to_numpy()
        self.day = daily.index.get_level_values(1).to_numpy()
        self.amount = daily.to_numpy()

    def summary(self, as_of: pd.Timestamp) -> pd.DataFrame:
        keep = self.day < pd.Timestamp(as_of).value
        code, day, amount = self.code[keep], self.day[keep], self.amount[keep]
        seen, start, count = np.unique(code, return_index=True, return_counts=True)
        first, last = day[start], day[start + count - 1]
        revenue = np.add.reduceat(amount, start) if len(start) else np.zeros(0)
        x = (count - 1).astype(float)
        week = WEEK.value
        with np.errstate(divide="ignore", invalid="ignore"):
            m = np.where(x > 0, (revenue - amount[start]) / x, np.nan)
        index = pd.Index(np.asarray(self.customers)[seen], name="customer_id")
        return pd.DataFrame(
            {"x": x, "t_x": (last - first) / week, "T": (pd.Timestamp(as_of).value - first) / week, "m": m},
            index=index,
        )


YEAR = pd.Timedelta(days=365)


def customer_features(
    transactions: pd.DataFrame,
    as_of: pd.Timestamp,
    products: pd.DataFrame | None = None,
    clv_model: clv.CLVModel | None = None,
    with_clv: bool = True,
    horizon_days: float = 365.0,
    days: PurchaseDays | None = None,
    codes: LineCodes | None = None,
) -> pd.DataFrame:
    """One row per customer seen before `as_of`, in the order of their first line."""
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
    days: PurchaseDays | None = None,
) -> np.ndarray:
    """Predicted gross revenue over the horizon for each customer (0 when never purchased;
    NaN for everyone while the history is too short to fit the models)."""
    summary = days.summary(as_of) if days is not None else PurchaseDays(transactions).summary(as_of)
    if model is None and not clv.can_fit(summary):
        return np.full(len(customers), np.nan)
    model = model or clv.fit_clv(summary)
    predicted = model.predict(summary, horizon_days)
    values = predicted.reindex(pd.Index(customers.astype(object)))
    return values.fillna(0.0).to_numpy(dtype=float)


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
