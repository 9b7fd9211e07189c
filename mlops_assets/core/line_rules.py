"""The quarantine rules as one Ibis expression: every line gets the first rule it fails (or
none), whichever engine runs it (DuckDB over a month's staged Parquet, DuckDB over a frame in
tests, or another Ibis backend).

The rules and their order are `quality.RULES`. A line's place in the run is `_seq` (an int64
that grows in file order, then line order): the first of equal lines stays valid. Tables with a
row per product (catalog, reference prices) come in small; what the rules need from earlier
days (published or staged lines) comes in as tables the engine joins.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
import pandas as pd

from mlops_assets.core.schemas import CANONICAL, PARTITION_COLUMN, READ_FAULT, UNPARSED

SEQ = "_seq"
KEY_COLUMNS = ["order_id", "product_id", "store_id", "quantity", "unit_price"]
REPLAY_KEY = ["order_id", "customer_id", "product_id", "store_id", "quantity", "unit_price"]


@dataclass(frozen=True)
class Rules:
    """The settings the rules read, and the run's window [start, end) and time."""

    start: pd.Timestamp
    end: pd.Timestamp
    now: pd.Timestamp
    max_abs_quantity: float = 1_000
    price_outlier_factor: float = 10.0
    return_lookback_days: int | None = None


@dataclass
class Context:
    """What the rules need beyond the lines, as tables on the lines' backend (None: absent).

    catalog_ids: product_id of the catalog (None or empty: unknown_product is off);
    listed: product_id, price (the catalog's list price, one row per product);
    medians: product_id, median (the run's median positive price, one row per product);
    earlier_orders: REPLAY_KEY and first_day of lines of earlier days (None: replays are off);
    earlier_sales: customer_id, product_id, order_ts of earlier sales."""

    catalog_ids: ir.Table | None = None
    listed: ir.Table | None = None
    medians: ir.Table | None = None
    earlier_orders: ir.Table | None = None
    earlier_sales: ir.Table | None = None


def timestamp(value: pd.Timestamp) -> ir.Value:
    return ibis.timestamp(pd.Timestamp(value).floor("us").to_pydatetime())


def reasons(lines: ir.Table, rules: Rules, context: Context, names: list[str]) -> ir.Table:
    """`lines` with a `reason` column: the first rule of `names` (in order) each line fails,
    null for a clean line."""
    t = lines
    ts, qty, price = t.order_ts, t.quantity, t.unit_price
    start, end, now = timestamp(rules.start), timestamp(rules.end), timestamp(rules.now)
    in_window = (ts >= start) & (ts < end)
    canonical = list(CANONICAL["transactions"])
    t = _with_reference(t, context)
    t = t.mutate(
        _duplicate=ibis.row_number().over(group_by=[t[c] for c in canonical], order_by=t[SEQ]) > 0,
        _replayed=_replayed(t, in_window, context.earlier_orders),
        _returned=_returns_without_sale(t, rules, in_window, context.earlier_sales),
        _outlier=_outlier(t, rules.price_outlier_factor),
    )
    masks = {
        "unreadable_line": t[READ_FAULT].notnull() if READ_FAULT in t.columns else ibis.literal(False),
        "unparseable_order_ts": ts.isnull(),
        "unparseable_value": t[UNPARSED].notnull(),
        "missing_key": functools.reduce(operator.or_, [t[c].isnull() for c in KEY_COLUMNS]),
        "future_timestamp": ts > now,
        "outside_window": ts.notnull() & ~in_window & ~(ts > now),
        "duplicate_line": t._duplicate,
        "replayed_order": t._replayed,
        "return_without_sale": t._returned,
        "zero_quantity": qty == 0,
        "absurd_quantity": qty.abs() > rules.max_abs_quantity,
        "non_positive_price": price <= 0,
        "outlier_price": t._outlier,
        "unknown_product": _unknown(t, context.catalog_ids),
    }
    reason = ibis.cases(*[(masks[n].fill_null(False), n) for n in names], else_=ibis.null("string"))
    return t.mutate(reason=reason).drop(
        "_duplicate",
        "_replayed",
        "_returned",
        "_outlier",
        "_ref",
        *[c for c in ("_median", "_price") if c in t.columns],
    )


def _replayed(t: ir.Table, in_window: ir.BooleanValue, earlier: ir.Table | None) -> ir.BooleanValue:
    """The same line (REPLAY_KEY) on an earlier day: among the lines with an order id and a
    timestamp in the window, and `earlier`."""
    if earlier is None:
        return ibis.literal(False)
    mine = t.filter(t.order_id.notnull() & in_window)
    ours = mine.select(*REPLAY_KEY, day=mine.order_ts.truncate("D"), seq=mine[SEQ])
    theirs = earlier.select(
        *[earlier[c].cast(t[c].type()).name(c) for c in REPLAY_KEY],
        day=earlier.first_day.cast(ours.day.type()),
        seq=ibis.null("int64"),
    )
    both = ours.union(theirs)
    both = both.mutate(first=both.day.min().over(group_by=[both[c] for c in REPLAY_KEY]))
    again = both.filter(both.seq.notnull() & (both.day > both.first))
    return t[SEQ].isin(again.seq)


def _returns_without_sale(
    t: ir.Table, rules: Rules, in_window: ir.BooleanValue, earlier: ir.Table | None
) -> ir.BooleanValue:
    """A return (quantity < 0) of a known customer with no sale of the same product to the same
    customer in the lookback before it; lines in the window's first lookback days not judged."""
    days = rules.return_lookback_days
    if days is None:
        return ibis.literal(False)
    since = timestamp(rules.start + pd.Timedelta(days=days))
    judged = (t.quantity < 0) & t.customer_id.notnull() & in_window & (t.order_ts >= since)
    asked = t.filter(judged).select(seq=t[SEQ], cust=t.customer_id, prod=t.product_id, at=t.order_ts)
    sold = t.filter((t.quantity > 0) & t.order_ts.notnull())
    sales = sold.select(cust=sold.customer_id, prod=sold.product_id, sold=sold.order_ts)
    if earlier is not None:
        sales = sales.union(
            earlier.select(
                cust=earlier.customer_id.cast("string"),
                prod=earlier.product_id.cast("string"),
                sold=earlier.order_ts.cast(sales.sold.type()),
            )
        )
    found = asked.join(
        sales,
        [
            asked.cust == sales.cust,
            asked.prod == sales.prod,
            sales.sold < asked.at,
            sales.sold >= asked.at - ibis.interval(days=days),
        ],
    ).select("seq")
    return judged & ~t[SEQ].isin(found.seq)


def _with_reference(t: ir.Table, context: Context) -> ir.Table:
    """`t` with `_ref`, the product's reference price: the catalog's list price, else the run's
    median positive price (tables with one row per product: a left join keeps every line once)."""
    joined = []
    for table, column in ((context.listed, "price"), (context.medians, "median")):
        if table is None:
            continue
        side = table.select(_pid=table.product_id.cast("string"), _val=table[column].cast("float64"))
        t = t.left_join(side, t.product_id == side._pid).drop("_pid").rename({f"_{column}": "_val"})
        joined.append(f"_{column}")
    ref = ibis.coalesce(*[t[c] for c in joined], ibis.null("float64")) if joined else ibis.null("float64")
    return t.mutate(_ref=ref)


def _outlier(t: ir.Table, factor: float) -> ir.BooleanValue:
    """unit_price more than `factor` off the reference price (`_ref`)."""
    positive = ibis.cases((t.unit_price > 0, t.unit_price), else_=ibis.null("float64"))
    ratio = positive / t._ref
    return (ratio > factor) | (ratio < 1.0 / factor)


def _unknown(t: ir.Table, catalog_ids: ir.Table | None) -> ir.BooleanValue:
    if catalog_ids is None:
        return ibis.literal(False)
    return t.product_id.notnull() & ~t.product_id.isin(catalog_ids.product_id)


def report_counts(routed: ir.Table, names: list[str]) -> ir.Table:
    """Per partition day: lines, lines per first failing rule, and nulls per canonical column."""
    canonical = list(CANONICAL["transactions"])
    return routed.group_by(PARTITION_COLUMN).aggregate(
        bronze_rows=routed.count(),
        **{f"rule_{n}": (routed.reason == n).fill_null(False).cast("int64").sum() for n in names},
        **{f"nulls_{c}": routed[c].isnull().cast("int64").sum() for c in canonical},
    )
