"""Route bronze lines to silver or quarantine, and summarise data quality.

Pandera gates whole tables (see schemas.py); routing needs a reason per row, so the row rules
are vectorised masks here, applied in priority order: a line carries its first failing rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlops_assets.core.history_rules import replayed_orders, returns_without_sale
from mlops_assets.core.schemas import CANONICAL, LINEAGE, PARTITION_COLUMN, READ_FAULT, TEXT, UNPARSED

KEY_COLUMNS = ["order_id", "product_id", "store_id", "quantity", "unit_price"]
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


def rule_masks(
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
) -> dict[str, pd.Series]:
    ts, qty, price = df["order_ts"], df["quantity"], df["unit_price"]
    canonical = list(CANONICAL["transactions"])
    unreadable = df[READ_FAULT].notna() if READ_FAULT in df else pd.Series(False, index=df.index)
    masks = {
        "unreadable_line": unreadable,
        "unparseable_order_ts": ts.isna(),
        "unparseable_value": df[UNPARSED].notna(),
        "missing_key": df[KEY_COLUMNS].isna().any(axis=1),
        "future_timestamp": ts > now,
        "outside_window": ts.notna() & ~window.contains(ts) & ~(ts > now),
        "duplicate_line": duplicate_lines(df, canonical),
        "replayed_order": replayed_orders(df, window, earlier_orders),
        "return_without_sale": returns_without_sale(df, window, return_lookback_days, earlier_sales),
        "zero_quantity": qty == 0,
        "absurd_quantity": qty.abs() > max_abs_quantity,
        "non_positive_price": price <= 0,
        "outlier_price": _price_outliers(df, catalog, price_outlier_factor, reference_prices),
        "unknown_product": pd.Series(False, index=df.index),
    }
    if catalog is not None and len(catalog):
        known = df["product_id"].isin(catalog["product_id"])
        masks["unknown_product"] = df["product_id"].notna() & ~known
    return masks


def duplicate_lines(df: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Exact repeats of an earlier line over `columns` (the first occurrence stays valid).

    Two passes because hashing every text column of every line dominates ingestion: lines
    that agree on the numeric and timestamp columns are the only candidates, and only those
    are compared in full (same answer as `df.duplicated(columns)`, about 3x faster on 1M lines).
    """
    types = pd.api.types
    cheap = [c for c in columns if types.is_numeric_dtype(df[c]) or types.is_datetime64_dtype(df[c])]
    if not cheap:
        return df.duplicated(columns, keep="first")
    candidate = df.duplicated(cheap, keep=False).to_numpy()
    out = np.zeros(len(df), dtype=bool)
    if candidate.any():
        out[candidate] = df.loc[candidate, columns].duplicated(keep="first").to_numpy()
    return pd.Series(out, index=df.index)


def _price_outliers(
    df: pd.DataFrame, catalog: pd.DataFrame | None, factor: float, medians: pd.Series | None = None
) -> pd.Series:
    """Reference price: the catalog's list price, else the product's median positive price
    (over `df`, or `medians`: product_id -> median over the whole run, when `df` is a month)."""
    codes, products = pd.factorize(df["product_id"])
    price = df["unit_price"].to_numpy()
    positive = pd.Series(np.where(price > 0, price, np.nan))
    if medians is None:
        reference = positive.groupby(codes).median().reindex(range(len(products))).to_numpy()
    else:
        reference = pd.Series(products).map(medians).to_numpy(dtype=float)
    if catalog is not None and "price" in catalog and catalog["price"].notna().any():
        listed = (
            catalog.dropna(subset=["price"]).drop_duplicates("product_id").set_index("product_id")["price"]
        )
        listed = pd.Series(products).map(listed).to_numpy(dtype=float)
        reference = np.where(np.isnan(listed), reference, listed)
    ref = np.where(codes >= 0, reference[codes.clip(0)], np.nan)
    ratio = positive.to_numpy() / ref
    return pd.Series((ratio > factor) | (ratio < 1.0 / factor), index=df.index)


def assign_reasons(masks: dict[str, pd.Series], index: pd.Index) -> pd.Series:
    """First failing rule per line, in RULES order; None for a clean line."""
    reason = np.full(len(index), None, dtype=object)
    for name in reversed(RULES):
        reason[masks[name].fillna(False).to_numpy()] = name
    return pd.Series(reason, index=index, name="reason")


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
    masks = rule_masks(
        bronze, window, now, catalog, max_abs_quantity, price_outlier_factor,
        earlier_orders, earlier_sales, return_lookback_days, reference_prices,
    )  # fmt: skip
    reason = assign_reasons(masks, bronze.index)
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
    day_codes, days = pd.factorize(bronze[PARTITION_COLUMN], sort=True)
    rule_codes = pd.Categorical(reason, categories=list(RULES)).codes  # -1 for a clean line
    # one bincount over (day, rule) cells instead of a crosstab: the report is per day
    cells = np.bincount(day_codes * (len(RULES) + 1) + rule_codes + 1, minlength=len(days) * (len(RULES) + 1))
    counts = pd.DataFrame(
        cells.reshape(len(days), len(RULES) + 1)[:, 1:], columns=list(RULES), index=days
    ).rename_axis(PARTITION_COLUMN)
    report = pd.DataFrame(index=counts.index)
    report["bronze_rows"] = np.bincount(day_codes, minlength=len(days))
    report["quarantined_rows"] = counts.sum(axis=1)
    report["silver_rows"] = report["bronze_rows"] - report["quarantined_rows"]
    report["quarantine_share"] = report["quarantined_rows"] / report["bronze_rows"]
    report["duplicate_rate"] = counts["duplicate_line"] / report["bronze_rows"]
    for rule in RULES:
        report[f"rule_{rule}"] = counts[rule].astype("int64")
    value_cols = list(CANONICAL["transactions"])
    nulls = bronze[value_cols].isna().groupby(day_codes).mean().set_axis(counts.index)
    for col in value_cols:
        report[f"null_{col}"] = nulls[col]
    return report.reset_index()


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
