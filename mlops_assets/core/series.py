"""Sales series: revenue and units per period at each configured level, zero-filled, with
calendar features. Long format: one row per (series_id, period)."""

from __future__ import annotations

from dataclasses import dataclass, field

import holidays
import ibis
import numpy as np
import pandas as pd

from mlops_assets.core import engine
from mlops_assets.core.line_features import categories_of

PERIOD = {"D": "D", "W": "W-SUN"}  # weekly periods run Monday..Sunday, labelled by the Monday
SEASON = {"D": 7, "W": 52}  # the seasonal period the models and MASE use
DIMENSION = {"store": "store_id", "category": "category"}


@dataclass
class SeriesSet:
    frame: pd.DataFrame  # series_id, level, key, period, revenue, units, calendar columns
    notes: list[str] = field(default_factory=list)

    def ids(self) -> list[str]:
        return list(dict.fromkeys(self.frame["series_id"]))

    def all_values(self, column: str = "revenue") -> dict[str, pd.Series]:
        """Every series at once, in order (one groupby, not one filter per series)."""
        groups = self.frame.groupby("series_id", sort=False)
        return {
            sid: pd.Series(g[column].to_numpy(dtype=float), index=pd.DatetimeIndex(g["period"]), name=sid)
            for sid, g in groups
        }

    def values(self, series_id: str, column: str = "revenue") -> pd.Series:
        rows = self.frame[self.frame["series_id"] == series_id]
        return pd.Series(
            rows[column].to_numpy(dtype=float), index=pd.DatetimeIndex(rows["period"]), name=series_id
        )


def period_start(ts: pd.Series, freq: str) -> pd.Series:
    return ts.dt.floor("D") if freq == "D" else ts.dt.to_period(PERIOD[freq]).dt.start_time


def complete_periods(start: pd.Timestamp, end_excl: pd.Timestamp, freq: str) -> pd.DatetimeIndex:
    """Periods wholly inside [start, end_excl): a week still running is left out."""
    if freq == "D":
        return pd.date_range(start.floor("D"), end_excl - pd.Timedelta(days=1), freq="D")
    first = start.to_period(PERIOD[freq]).start_time
    if first < start.floor("D"):
        first += pd.Timedelta(weeks=1)
    weeks = pd.date_range(first, end_excl, freq="W-MON")
    return weeks[weeks + pd.Timedelta(weeks=1) <= end_excl]


def calendar_features(periods: pd.DatetimeIndex, freq: str, country: str) -> pd.DataFrame:
    """Day of week (daily series) and the number of public holidays in the period."""
    cal = holidays.country_holidays(country, years=sorted({*periods.year, *(periods.year + 1)}))
    days = pd.DatetimeIndex(sorted(pd.Timestamp(d) for d in cal))
    span = 1 if freq == "D" else 7
    counts = sum((periods + pd.Timedelta(days=k)).isin(days).astype(int) for k in range(span))
    return pd.DataFrame(
        {"period": periods, "day_of_week": periods.dayofweek if freq == "D" else -1, "holidays": counts}
    )


def _period(ts, freq: str):
    """The period an Ibis timestamp falls in: its day, or its week's Monday (ISO weeks)."""
    return ts.truncate("D" if freq == "D" else "W")


def _with_category(lines: ibis.Table, categories: pd.DataFrame | None) -> ibis.Table:
    """Each line with its product's category ('unknown' off the catalog); none without a catalog."""
    if categories is None:
        return lines
    catalog = ibis.memtable(categories).rename(catalog_product="product_id", catalog_category="category")
    joined = lines.left_join(catalog, lines.product_id == catalog.catalog_product)
    return joined.mutate(category=joined.catalog_category.fill_null("unknown")).drop(
        "catalog_product", "catalog_category"
    )


def period_totals(
    lines: ibis.Table | pd.DataFrame,
    products: pd.DataFrame | None,
    freq: str,
    first: pd.Timestamp,
    last: pd.Timestamp,
) -> ibis.Table:
    """Net revenue (`amount`) and units (`quantity`) per (store, category, period) of the lines
    in periods first..last, exact: the one line-level query behind every level of the sales
    series. Returned as a small in-memory table (one row per store, category and period)."""
    lines = engine.as_table(lines)
    lines = _with_category(lines.mutate(period=_period(lines.order_ts, freq)), categories_of(products))
    lines = lines.filter((lines.period >= first.to_pydatetime()) & (lines.period <= last.to_pydatetime()))
    keys = ["store_id", "period"] + (["category"] if "category" in lines.columns else [])
    totals = lines.group_by(keys).aggregate(
        amount=engine.exact_sum(lines.amount), quantity=engine.exact_sum(lines.quantity)
    )
    return ibis.memtable(totals.to_pyarrow())


def _level_totals(totals: ibis.Table, key: str | None) -> pd.DataFrame:
    """One level's (key, period, amount, quantity), summed exactly, in key and period order."""
    keys = ["period"] if key is None else [totals[key].cast("string").name("key"), "period"]
    out = totals.group_by(keys).aggregate(
        amount=totals.amount.sum().cast("float64"), quantity=totals.quantity.sum().cast("float64")
    )
    out = engine.to_frame(out.order_by(["period"] if key is None else ["key", "period"]))
    out["period"] = out["period"].astype("datetime64[ns]")
    return out.assign(key="total") if key is None else out


def sales_series(
    lines: ibis.Table | pd.DataFrame,
    products: pd.DataFrame | None,
    freq: str,
    levels: list[str],
    start: pd.Timestamp,
    end_excl: pd.Timestamp,
    country: str = "US",
) -> SeriesSet:
    """Net revenue and units per complete period for each level; a level whose dimension is
    absent (one store "ALL", no catalog categories) is skipped with a note. `lines`: silver
    order lines on any Ibis backend; only their totals per store, category and period leave it."""
    periods = complete_periods(pd.Timestamp(start), pd.Timestamp(end_excl), freq)
    notes: list[str] = []
    totals = period_totals(lines, products, freq, periods[0], periods[-1]) if len(periods) else None
    parts = []
    for level in levels:
        if totals is None:
            break
        if level == "total":
            grouped = _level_totals(totals, None)
        else:
            column = DIMENSION[level]
            if column not in totals.columns or totals[column].nunique().to_pyarrow().as_py() <= 1:
                notes.append(f"level '{level}' skipped: {column} is absent or has a single value")
                continue
            grouped = _level_totals(totals, column)
        for key, one in grouped.groupby("key", sort=True):
            one = one.set_index("period")[["amount", "quantity"]].reindex(periods, fill_value=0.0)
            series_id = "total" if level == "total" else f"{level}={key}"
            parts.append(
                pd.DataFrame(
                    {
                        "series_id": series_id,
                        "level": level,
                        "key": key,
                        "period": periods,
                        "revenue": one["amount"].to_numpy(dtype=float),
                        "units": one["quantity"].to_numpy(dtype=float),
                    }
                )
            )
    if not parts:
        return SeriesSet(
            pd.DataFrame(columns=["series_id", "level", "key", "period", "revenue", "units"]), notes
        )
    frame = pd.concat(parts, ignore_index=True).merge(calendar_features(periods, freq, country), on="period")
    notes.append("promotions: not in the canonical schema, so not used as a regressor")
    return SeriesSet(frame, notes)


def fourier_terms(index: pd.DatetimeIndex, period_days: float, k: int, origin: pd.Timestamp) -> np.ndarray:
    """sin/cos pairs of a seasonal cycle of `period_days`, measured from a fixed origin so
    that training and forecast rows line up."""
    t = (index - origin).days.to_numpy(dtype=float)
    cols = []
    for i in range(1, k + 1):
        angle = 2 * np.pi * i * t / period_days
        cols += [np.sin(angle), np.cos(angle)]
    return np.column_stack(cols)


def bottom_series(
    lines: ibis.Table | pd.DataFrame, products: pd.DataFrame | None, freq: str, end_excl: pd.Timestamp
) -> tuple[pd.DataFrame, list[str]]:
    """The catalog's bottom series: net revenue per (product, store, complete period) with the
    product's category; only periods with lines (core/hierarchy.py zero-fills each series from
    its first sale). A product missing from the catalog file goes to category 'unknown'.
    `lines`: silver order lines on any Ibis backend; one row per series and period leaves it."""
    notes: list[str] = []
    columns = ["product_id", "store_id", "category", "period", "revenue"]
    lines = engine.as_table(lines)
    first_ts = engine.to_frame(lines.aggregate(first=lines.order_ts.min()))["first"].iloc[0]
    if pd.isna(first_ts):
        return pd.DataFrame(columns=columns), ["no transactions: no catalog series"]
    first = pd.Series([pd.Timestamp(first_ts)]).pipe(period_start, freq).iloc[0]
    complete = complete_periods(first, pd.Timestamp(end_excl), freq)
    if not len(complete):
        return pd.DataFrame(columns=columns), notes
    categories = categories_of(products)
    if categories is None:
        categories = pd.DataFrame({"product_id": pd.Series(dtype=str), "category": pd.Series(dtype=str)})
    lines = _with_category(lines.mutate(period=_period(lines.order_ts, freq)), categories)
    lines = lines.filter(
        (lines.period >= complete[0].to_pydatetime())
        & (lines.period <= complete[-1].to_pydatetime())
        & lines.product_id.notnull()
        & lines.store_id.notnull()
    )
    unknown = lines.filter(lines.category == "unknown").product_id.nunique()
    unknown = int(engine.to_frame(unknown.name("n").as_table())["n"].iloc[0])
    if unknown:
        notes.append(f"{unknown} products without a category in the products source: category 'unknown'")
    keys = ["product_id", "store_id", "category", "period"]
    out = engine.to_frame(
        lines.group_by(keys).aggregate(revenue=engine.exact_float_sum(lines.amount)).order_by(keys)
    )
    out["period"] = out["period"].astype("datetime64[ns]")
    out[["product_id", "store_id", "category"]] = out[["product_id", "store_id", "category"]].astype(str)
    return out[columns].astype({"revenue": float}), notes
