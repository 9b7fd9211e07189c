"""Customer features as of an instant, from order lines strictly before it.

The lines are reduced once to a row per (customer, day) in the engine (core/line_features.py);
the features of an instant are read off the customers' running totals over the days before it
(core/customer_state.py), a row per customer.
"""

from __future__ import annotations

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlops_assets.core import clv, engine
from mlops_assets.core.customer_state import LOW, CustomerState
from mlops_assets.core.feature_registry import ENTITY, conform
from mlops_assets.core.line_features import DailyTables

DAY_NS = 86_400 * 10**9


def customer_features(
    transactions: pd.DataFrame | ibis.Table | None,
    as_of: pd.Timestamp,
    products: pd.DataFrame | None = None,
    clv_model: clv.CLVModel | None = None,
    with_clv: bool = True,
    horizon_days: float = 365.0,
    daily: DailyTables | None = None,
    state: CustomerState | None = None,
) -> pd.DataFrame:
    """One row per customer seen before `as_of` (guest lines have no customer and are left out),
    in the order of their first line (then by id). `daily`: the lines' reduced tables, built
    once for many instants, and `state` the running totals over them, advanced to as_of (which
    must then be a midnight); otherwise `transactions` are reduced here, on days aligned to
    as_of's time of day.

    `clv_model` reuses a fitted model; otherwise, with `with_clv`, one is fitted on the same
    history (still strictly before as_of). Category features need `products` with a category.
    """
    as_of = pd.Timestamp(as_of)
    if state is None and daily is None:
        daily, as_of = DailyTables.aligned(transactions, products, as_of)
    elif as_of != as_of.floor("D"):
        raise ValueError(f"features from daily tables are as of a midnight, not {as_of}")
    state = state or CustomerState(daily, products)
    state.advance(as_of)
    columns, sources = customer_columns(state, clv_model, with_clv, horizon_days)
    columns[ENTITY["customer"]] = pd.arrays.ArrowStringArray(columns[ENTITY["customer"]])
    if "favourite_category" in columns:
        columns["favourite_category"] = pd.arrays.ArrowStringArray(columns["favourite_category"])
    return conform(pd.DataFrame(columns), "customer", sources)


def customer_columns(
    state: CustomerState,
    clv_model: clv.CLVModel | None = None,
    with_clv: bool = True,
    horizon_days: float = 365.0,
    deferred: bool = False,
) -> tuple[dict[str, np.ndarray | pa.Array], set[str]]:
    """The features of the customers seen before the state's instant, as arrays (text as
    Arrow), and the sources they read: what customer_features frames and the snapshots write
    as Arrow without a pandas frame between (a chain's weekly instant holds a million rows).
    `deferred`: clv_12m is a function that fits and predicts, from copies of the state's
    values, so that another thread may run it while the state moves on (snapshots)."""
    as_of = state.at
    n, sums = state.seen(), {c: v[: state.seen()] for c, v in state.sums.items()}
    orders = sums["orders"].astype(float)
    gross, bought = sums["gross"] / engine.NANO, sums["bought"] / engine.NANO
    first_buy, last_buy = state.first_buy[:n], state.last_buy[:n]
    bought_any = last_buy != LOW
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {
            ENTITY["customer"]: state.ids_arrow[:n].cast(pa.large_string()),
            "recency_days": np.where(bought_any, (as_of.value - last_buy) / DAY_NS, np.nan),
            "frequency": sums["orders"] - state.left["orders"][:n],
            "monetary": (sums["net"] - state.left["net"][:n]) / engine.NANO,
            "avg_order_value": np.where(orders > 0, gross / orders, np.nan),
            "tenure_days": (as_of.value - state.first_ts[:n]) / DAY_NS,
            "avg_days_between_orders": np.where(
                orders > 1, (last_buy - first_buy) / DAY_NS / (orders - 1), np.nan
            ),
            "return_rate": np.where(bought > 0, sums["returned"] / engine.NANO / bought, np.nan),
            # a copy: Arrow takes numpy arrays without one, and the state moves on to the next instant
            "distinct_products": sums["distinct"].copy(),
        }
    sources = {"transactions"}
    if state.categories is not None:
        sources.add("products")
        spend = state.spend[:n]
        total = spend.sum(axis=1)
        best = spend.argmax(axis=1) if spend.shape[1] else np.zeros(n, dtype=int)
        names = pa.array([str(c) for c in state.categories] or [None], pa.large_string())
        none = pa.scalar(None, pa.large_string())
        out["favourite_category"] = pc.if_else(pa.array(total > 0), names.take(pa.array(best)), none)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["favourite_category_share"] = np.where(
                total > 0, (spend.max(axis=1) / engine.NANO) / (total / engine.NANO), np.nan
            )
    if clv_model is not None or with_clv:
        summary, rows = state.rfm(positions=True)

        def clv_12m() -> np.ndarray:
            return customer_clv(summary, pd.Series(np.arange(n)), clv_model, horizon_days, rows)

        out["clv_12m"] = clv_12m if deferred else clv_12m()
    else:
        out["clv_12m"] = np.full(n, np.nan)
    return out, sources


def customer_clv(
    summary: pd.DataFrame,
    customers: pd.Series,
    model: clv.CLVModel | None = None,
    horizon_days: float = 365.0,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Predicted gross revenue over the horizon for each customer (0 when never purchased;
    NaN for everyone while the history is too short to fit the models). `summary`: the
    customers' rfm_summary rows; `rows`: their positions among `customers`, when known (a
    million-customer reindex by id costs more than the prediction)."""
    if model is None and not clv.can_fit(summary):
        return np.full(len(customers), np.nan)
    model = model or clv.fit_clv(summary)
    predicted = model.predict(summary, horizon_days)
    if rows is None:
        values = predicted.reindex(pd.Index(customers.astype(object))).to_numpy(dtype=float)
    else:
        values = np.full(len(customers), np.nan)
        values[rows] = predicted.to_numpy(dtype=float)
    return np.where(np.isnan(values), 0.0, values)
