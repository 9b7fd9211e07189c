"""Customer features as of an instant, from order lines strictly before it.

The lines are reduced once to a row per (customer, day) in the engine (core/line_features.py);
the features of an instant are one query over the days before it, a row per customer back.
"""

from __future__ import annotations

import ibis
import numpy as np
import pandas as pd

from mlops_assets.core import clv, engine
from mlops_assets.core.feature_registry import ENTITY, conform
from mlops_assets.core.line_features import DAY, DailyTables, before, categories_of

YEAR = pd.Timedelta(days=365)
DAY_NS = 86_400 * 10**9


def customer_features(
    transactions: pd.DataFrame | ibis.Table | None,
    as_of: pd.Timestamp,
    products: pd.DataFrame | None = None,
    clv_model: clv.CLVModel | None = None,
    with_clv: bool = True,
    horizon_days: float = 365.0,
    daily: DailyTables | None = None,
) -> pd.DataFrame:
    """One row per customer seen before `as_of` (guest lines have no customer and are left out),
    in the order of their first line (then by id). `daily`: the lines' reduced tables, built
    once for many instants (as_of must then be a midnight); otherwise `transactions` are reduced
    here, on days aligned to as_of's time of day.

    `clv_model` reuses a fitted model; otherwise, with `with_clv`, one is fitted on the same
    history (still strictly before as_of). Category features need `products` with a category.
    """
    as_of = pd.Timestamp(as_of)
    if daily is None:
        daily, as_of = DailyTables.aligned(transactions, products, as_of)
    elif as_of != as_of.floor("D"):
        raise ValueError(f"features from daily tables are as of a midnight, not {as_of}")
    days = before(daily.customers, as_of)
    buy = days.buy_lines > 0
    year = days[DAY] >= (as_of - YEAR).to_pydatetime()
    per = days.group_by("customer_id").aggregate(
        first_ts=days.first_ts.min(),
        first_buy=days.first_buy_ts.min(),
        last_buy=days.last_buy_ts.max(),
        orders=days.new_orders.sum(),
        frequency=days.new_orders.sum(where=year),
        gross=days.gross.sum().cast("float64"),
        monetary=days.net.sum(where=year).cast("float64"),
        bought=days.bought.sum().cast("float64"),
        returned=days.returned.sum().cast("float64"),
        distinct_products=days.new_products.sum(),
        # the CLV models' purchase days (a day with a purchase line): count, first, last, and
        # the revenue of all but the first
        purchase_days=buy.sum(),
        first_day=days[DAY].min(where=buy),
        last_day=days[DAY].max(where=buy),
        repeat_revenue=(days.gross.sum(where=buy) - days.gross.argmin(days[DAY], where=buy)).cast("float64"),
    )
    per = engine.to_frame(per.order_by(["first_ts", "customer_id"]))
    sums = ["orders", "frequency", "gross", "monetary", "bought", "returned", "distinct_products"]
    per[sums] = per[sums].fillna(0)  # a sum over no rows is null in SQL, zero here
    stamps = {c: _ns(per[c]) for c in ("first_ts", "first_buy", "last_buy")}
    orders = per["orders"].to_numpy(dtype=float)
    gross, bought = per["gross"].to_numpy(dtype=float), per["bought"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = pd.DataFrame(
            {
                ENTITY["customer"]: per["customer_id"].astype("string[pyarrow]"),
                "recency_days": (as_of.value - stamps["last_buy"]) / DAY_NS,
                "frequency": per["frequency"].astype("int64"),
                "monetary": per["monetary"].to_numpy(dtype=float),
                "avg_order_value": np.where(orders > 0, gross / orders, np.nan),
                "tenure_days": (as_of.value - stamps["first_ts"]) / DAY_NS,
                "avg_days_between_orders": np.where(
                    orders > 1, (stamps["last_buy"] - stamps["first_buy"]) / DAY_NS / (orders - 1), np.nan
                ),
                "return_rate": np.where(bought > 0, per["returned"].to_numpy(dtype=float) / bought, np.nan),
                "distinct_products": per["distinct_products"].astype("int64"),
            }
        )
    sources = {"transactions"}
    if daily.categories is not None:
        sources.add("products")
        fav, share = _favourite_category(daily.categories, as_of, out[ENTITY["customer"]], products)
        out["favourite_category"], out["favourite_category_share"] = fav, share
    if clv_model is not None or with_clv:
        summary = _rfm(per, as_of)
        out["clv_12m"] = customer_clv(summary, out[ENTITY["customer"]], clv_model, horizon_days)
    else:
        out["clv_12m"] = np.nan
    return conform(out, "customer", sources)


def _ns(stamps: pd.Series) -> np.ndarray:
    """Timestamps as float nanoseconds, NaN where missing."""
    values = pd.to_datetime(stamps).astype("datetime64[ns]")
    return np.where(values.isna(), np.nan, values.to_numpy().view("int64").astype(float))


def _rfm(per: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """The CLV models' input (clv.rfm_summary's frame) of the customers with a purchase, by id."""
    rows = per[per["purchase_days"].fillna(0) > 0].sort_values("customer_id")
    first = pd.to_datetime(rows["first_day"]).astype("datetime64[ns]")
    last = pd.to_datetime(rows["last_day"]).astype("datetime64[ns]")
    x = rows["purchase_days"].astype(float) - 1
    return pd.DataFrame(
        {
            "x": x.to_numpy(),
            "t_x": ((last - first) / clv.WEEK).to_numpy(),
            "T": ((as_of - first) / clv.WEEK).to_numpy(),
            "m": (rows["repeat_revenue"] / x.where(x > 0)).astype(float).to_numpy(),
        },
        index=pd.Index(rows["customer_id"].astype(object), name="customer_id"),
    )


def _favourite_category(
    spend_days: ibis.Table, as_of: pd.Timestamp, customers: pd.Series, products: pd.DataFrame
) -> tuple[pd.Series, np.ndarray]:
    """The category with the most gross revenue before as_of (ties: the catalog's first) and
    its share of the customer's gross revenue in catalog categories, ranked in the engine."""
    days = before(spend_days, as_of)
    names = pd.factorize(categories_of(products)["category"])[1]
    rank = ibis.memtable(pd.DataFrame({"category": names.astype(str), "rank": np.arange(len(names))}))
    spend = days.group_by(["customer_id", "category"]).aggregate(spend=days.spend.sum().cast("float64"))
    spend = spend.join(rank, "category")
    order = ibis.window(group_by="customer_id", order_by=[ibis.desc("spend"), "rank"])
    spend = spend.mutate(
        place=ibis.row_number().over(order), total=spend.spend.sum().over(ibis.window(group_by="customer_id"))
    )
    best = engine.to_frame(spend.filter(spend.place == 0).select("customer_id", "category", "spend", "total"))
    best = best.set_index(best["customer_id"].astype(object)).reindex(pd.Index(customers.astype(object)))
    total = best["total"].to_numpy(dtype=float)
    fav = pd.Series(best["category"].to_numpy(dtype=object), dtype="string[pyarrow]")
    fav[~(total > 0)] = pd.NA
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(total > 0, best["spend"].to_numpy(dtype=float) / total, np.nan)
    return fav, share


def customer_clv(
    summary: pd.DataFrame,
    customers: pd.Series,
    model: clv.CLVModel | None = None,
    horizon_days: float = 365.0,
) -> np.ndarray:
    """Predicted gross revenue over the horizon for each customer (0 when never purchased;
    NaN for everyone while the history is too short to fit the models). `summary`: the
    customers' rfm_summary rows."""
    if model is None and not clv.can_fit(summary):
        return np.full(len(customers), np.nan)
    model = model or clv.fit_clv(summary)
    predicted = model.predict(summary, horizon_days)
    values = predicted.reindex(pd.Index(customers.astype(object)))
    return values.fillna(0.0).to_numpy(dtype=float)
