"""Route bronze lines to silver or quarantine, and summarise data quality.

Pandera gates whole tables (see schemas.py); routing needs a reason per row: a line carries
its first failing rule of RULES, in this order. The rules are one Ibis expression
(core/line_rules.py) that ingestion runs over a month's staged files; `split_transactions`
runs the same expression over a frame (tests, small inputs).
"""

from __future__ import annotations

from dataclasses import dataclass

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa

from mlops_assets.core import engine, line_rules, warehouse
from mlops_assets.core.schemas import CANONICAL, LINEAGE, PARTITION_COLUMN, READ_FAULT, TEXT, UNPARSED

KEY_COLUMNS = line_rules.KEY_COLUMNS
RULES: dict[str, str] = {
    "unreadable_line": "the record could not be read as a line of its file (see read_fault, unparsed_values)",
    "unparseable_order_ts": "order_ts is missing or does not parse as a timestamp",
    "unparseable_value": "a value does not parse as its canonical type (see unparsed_values)",
    "missing_key": "order_id, product_id, store_id, quantity or unit_price is missing",
    "future_timestamp": "order_ts is later than the time of the run",
    "outside_window": "order_ts falls outside the configured window",
    "duplicate_line": "exact copy of an earlier line (every canonical column equal)",
    "replayed_order": "the same line (order, customer, product, store, quantity, price) on an earlier day",
    "return_without_sale": "a return with no sale of its product to its customer in return_lookback_days",
    "zero_quantity": "quantity is 0",
    "absurd_quantity": "|quantity| exceeds quality.max_abs_quantity",
    "non_positive_price": "unit_price is 0 or negative",
    "outlier_price": "unit_price is more than quality.price_outlier_factor off the product's reference price",
    "unknown_product": "product_id is not in the product catalog",
}


@dataclass(frozen=True)
class Window:
    start: pd.Timestamp  # first day
    end: pd.Timestamp  # exclusive: the day after the last partition

    def contains(self, ts: pd.Series) -> pd.Series:
        return (ts >= self.start) & (ts < self.end)


def attribute_partitions(df: pd.DataFrame, window: Window, before: pd.Timestamp | None = None) -> pd.Series:
    """The day each line belongs to.

    In-window lines belong to their own day. A line whose timestamp is missing, unparseable
    or outside the window belongs to the day of the nearest preceding line of the same file
    (the next one for a file's leading lines): stable from run to run, and it lands with the
    run that reads the new file it came in. `before`: the day of the line before `df`, when
    `df` is a piece of one file after its first.
    """
    day = df["order_ts"].dt.floor("D").where(window.contains(df["order_ts"]))
    if before is not None and len(day) and pd.isna(day.iloc[0]):
        day.iloc[0] = before
    if df["source_file"].nunique() == 1:
        day = day.ffill().bfill()
    else:
        day = day.groupby(df["source_file"], sort=False).transform(lambda s: s.ffill().bfill())
    return day.fillna(window.start).astype("datetime64[ns]")


def rules_of(
    window: Window,
    now: pd.Timestamp,
    max_abs_quantity: float = 1_000,
    price_outlier_factor: float = 10.0,
    return_lookback_days: int | None = None,
) -> line_rules.Rules:
    return line_rules.Rules(
        window.start, window.end, now, max_abs_quantity, price_outlier_factor, return_lookback_days
    )


def product_tables(catalog: pd.DataFrame | None) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The catalog's product ids (None: unknown_product is off) and list prices, one row each."""
    if catalog is None or not len(catalog):
        return None, None
    ids = pd.DataFrame({"product_id": catalog["product_id"].dropna().astype(str).unique()})
    if "price" not in catalog or not catalog["price"].notna().any():
        return ids, None
    listed = catalog.dropna(subset=["price"]).drop_duplicates("product_id")[["product_id", "price"]]
    return ids, listed.astype({"product_id": str, "price": "float64"})


def median_prices(df: pd.DataFrame) -> pd.Series:
    """product_id -> median positive unit price over `df` (pandas' median)."""
    price = df["unit_price"].where(df["unit_price"] > 0)
    return price.groupby(df["product_id"], dropna=True).median().dropna()


def _text(values: pd.Series) -> pa.Array:
    return pa.array(values.astype(object).where(values.notna(), None), type=pa.string())


def _stamps(values: pd.Series) -> pa.Array:
    return pa.array(pd.to_datetime(values).astype("datetime64[ns]"), type=pa.timestamp("ns"))


def earlier_orders_table(frame: pd.DataFrame) -> pa.Table:
    """REPLAY_KEY and first_day of lines of earlier days, typed (an empty frame included)."""
    column = {
        c: frame[c] if c in frame else pd.Series(dtype=object) for c in [*line_rules.REPLAY_KEY, "first_day"]
    }
    return pa.table(
        {
            **{c: _text(column[c]) for c in ("order_id", "customer_id", "product_id", "store_id")},
            **{
                c: pa.array(column[c].astype("float64"), from_pandas=True) for c in ("quantity", "unit_price")
            },
            "first_day": _stamps(column["first_day"]),
        }
    )


def earlier_sales_table(frame: pd.DataFrame) -> pa.Table:
    """customer_id, product_id, order_ts of earlier sales, typed."""
    return pa.table(
        {
            "customer_id": _text(frame["customer_id"]),
            "product_id": _text(frame["product_id"]),
            "order_ts": _stamps(frame["order_ts"]),
        }
    )


def frame_reasons(
    df: pd.DataFrame,
    window: Window,
    now: pd.Timestamp,
    catalog: pd.DataFrame | None,
    max_abs_quantity: float,
    price_outlier_factor: float,
    earlier_orders: pd.DataFrame | None = None,
    earlier_sales: pd.DataFrame | None = None,
    return_lookback_days: int | None = None,
    reference_prices: pd.Series | None = None,
) -> pd.Series:
    """First failing rule per line of a frame (None for a clean line): the rules of
    core/line_rules.py, run by DuckDB over the frame, as ingestion runs them over a month."""
    from mlops_assets.core.staging import arrow_of

    if df.empty:
        return pd.Series(None, index=df.index, dtype=object, name="reason")
    rules = rules_of(window, now, max_abs_quantity, price_outlier_factor, return_lookback_days)
    ids, listed = product_tables(catalog)
    medians = median_prices(df) if reference_prices is None else reference_prices
    medians = pd.DataFrame({"product_id": medians.index.astype(str), "median": medians.to_numpy(dtype=float)})
    lines = arrow_of(df.reset_index(drop=True)).append_column(
        line_rules.SEQ, pa.array(np.arange(len(df), dtype="int64"))
    )
    with engine.memory_backend() as con:
        context = line_rules.Context(
            catalog_ids=ibis.memtable(ids) if ids is not None else None,
            listed=ibis.memtable(listed) if listed is not None else None,
            medians=ibis.memtable(medians),
            earlier_orders=_memtable(earlier_orders, earlier_orders_table),
            earlier_sales=_memtable(earlier_sales, earlier_sales_table),
        )
        routed = line_rules.reasons(ibis.memtable(lines), rules, context, list(RULES))
        got = con.to_pyarrow(routed.select(line_rules.SEQ, "reason").order_by(line_rules.SEQ))
    reason = got.column("reason").to_numpy(zero_copy_only=False)
    return pd.Series(reason, index=df.index, dtype=object, name="reason")


def _memtable(frame: pd.DataFrame | None, typed) -> ibis.Table | None:
    return None if frame is None else ibis.memtable(typed(frame))


@dataclass
class Split:
    silver: pd.DataFrame
    quarantined: pd.DataFrame
    report: pd.DataFrame  # one row per partition day


def split_transactions(
    bronze: pd.DataFrame,
    window: Window,
    now: pd.Timestamp,
    catalog: pd.DataFrame | None = None,
    max_abs_quantity: float = 1_000,
    price_outlier_factor: float = 10.0,
    earlier_orders: pd.DataFrame | None = None,
    earlier_sales: pd.DataFrame | None = None,
    return_lookback_days: int | None = None,
    reference_prices: pd.Series | None = None,
) -> Split:
    """Every bronze line lands in exactly one of silver or quarantine (with a reason).
    `earlier_orders`: order id -> first day published before the run, for replayed_order
    (None: that rule is off)."""
    reason = frame_reasons(
        bronze, window, now, catalog, max_abs_quantity, price_outlier_factor,
        earlier_orders, earlier_sales, return_lookback_days, reference_prices,
    )  # fmt: skip
    return split_by_reason(bronze, reason)


def split_by_reason(bronze: pd.DataFrame, reason: pd.Series) -> Split:
    """Silver (no reason) and quarantine (with it), each in bronze's order, and the report."""
    bad = reason.notna().to_numpy()
    silver = _renumbered(bronze[~bad])
    quarantined = _renumbered(bronze[bad].assign(reason=reason[bad]))
    return Split(silver, quarantined, quality_report(bronze, reason))


def _renumbered(frame: pd.DataFrame) -> pd.DataFrame:
    """A fresh 0..n-1 index without reset_index's full copy of a million-line frame."""
    frame.index = pd.RangeIndex(len(frame))
    return frame


def lines_in_both(silver: pd.DataFrame, quarantined: pd.DataFrame) -> int:
    """Source lines (file, row, day) that appear more than once across silver and quarantine.
    The day tells apart a day kept from an earlier version of a file (core/publication.py)
    from the line that has its record number in the file now."""
    cols = (
        [*LINEAGE, PARTITION_COLUMN]
        if PARTITION_COLUMN in silver and PARTITION_COLUMN in quarantined
        else LINEAGE
    )
    both = pd.concat([silver[cols], quarantined[cols]], ignore_index=True)
    files = pd.factorize(both["source_file"])[0].astype("int64")
    rows = both["source_row"].to_numpy(dtype="int64")
    # one int64 per line hashes far faster than a (text, int) pair
    key = files * (int(rows.max(initial=0)) + 1) + rows
    if PARTITION_COLUMN in cols:
        key = key * 40_000 + (
            both[PARTITION_COLUMN].to_numpy().astype("datetime64[D]").astype("int64") % 40_000
        )
    return int(pd.Series(key).duplicated().sum())


def quality_report(bronze: pd.DataFrame, reason: pd.Series) -> pd.DataFrame:
    """Per partition day: reconciliation, counts per rule, duplicate rate, null rates."""
    from mlops_assets.core.staging import arrow_of

    cols = [*CANONICAL["transactions"], PARTITION_COLUMN]
    frame = bronze[cols].reset_index(drop=True).assign(reason=pd.Series(reason).astype(object).to_numpy())
    with engine.memory_backend() as con:
        counts = report_counts_of(con, ibis.memtable(arrow_of(frame)))
    return report_from_counts(counts)


def report_counts_of(con, routed: ibis.Table) -> pd.DataFrame:
    """line_rules.report_counts of lines with their reason, run by `con`."""
    return warehouse.to_pandas(con.to_pyarrow(line_rules.report_counts(routed, list(RULES))))


def report_from_counts(counts: pd.DataFrame) -> pd.DataFrame:
    """The quality report (a row per partition day) from line_rules.report_counts."""
    counts = counts.sort_values(PARTITION_COLUMN, ignore_index=True)
    rules = [f"rule_{r}" for r in RULES]
    bronze = counts["bronze_rows"].astype("int64")
    report = pd.DataFrame({PARTITION_COLUMN: counts[PARTITION_COLUMN].astype("datetime64[ns]")})
    report["bronze_rows"] = bronze
    report["quarantined_rows"] = counts[rules].sum(axis=1).astype("int64")
    report["silver_rows"] = report["bronze_rows"] - report["quarantined_rows"]
    report["quarantine_share"] = report["quarantined_rows"] / bronze
    report["duplicate_rate"] = counts["rule_duplicate_line"].astype("int64") / bronze
    for rule in rules:
        report[rule] = counts[rule].astype("int64")
    for col in CANONICAL["transactions"]:
        report[f"null_{col}"] = counts[f"nulls_{col}"].astype("int64") / bronze
    return report


def run_summary(report: pd.DataFrame) -> dict[str, float]:
    """Totals over the days of a run, for metadata the UI charts."""
    bronze = int(report["bronze_rows"].sum())
    quarantined = int(report["quarantined_rows"].sum())
    return {
        "bronze_rows": bronze,
        "silver_rows": int(report["silver_rows"].sum()),
        "quarantined_rows": quarantined,
        "quarantine_share": quarantined / bronze if bronze else 0.0,
        "duplicate_rate": float(report["rule_duplicate_line"].sum() / bronze) if bronze else 0.0,
    }


def with_bad_lines(typed: pd.DataFrame, bad: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """The typed lines plus one row per bad line (every value null, the raw text in
    unparsed_values, why in read_fault), in file order: each ends in quarantine, and lands in
    the partition of the lines around it."""
    typed[READ_FAULT] = pd.Series(pd.NA, index=typed.index, dtype=TEXT)
    if bad.empty:
        return typed
    rows = pd.DataFrame(
        {
            UNPARSED: ("line=" + bad["raw_line"].astype(str).map(repr)).astype(TEXT),
            READ_FAULT: bad["read_fault"].astype(TEXT),
            "source_file": bad["source_file"].astype(TEXT),
            "source_row": bad["source_row"].astype("int64"),
        }
    )
    both = pd.concat([typed, rows], ignore_index=True)
    for col, dtype in typed.dtypes.items():
        if both[col].dtype != dtype:
            both[col] = both[col].astype(dtype)
    file_rank = pd.Categorical(both["source_file"], categories=order).codes
    both = both.iloc[np.lexsort((both["source_row"].to_numpy(), file_rank))]
    return both.reset_index(drop=True)
