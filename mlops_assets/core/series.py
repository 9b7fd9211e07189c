"""Sales series: revenue and units per period at each configured level, zero-filled, with
calendar features. Long format: one row per (series_id, period)."""

from __future__ import annotations

from dataclasses import dataclass, field

import holidays
import numpy as np
import pandas as pd

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


def sales_series(
    transactions: pd.DataFrame,
    products: pd.DataFrame | None,
    freq: str,
    levels: list[str],
    start: pd.Timestamp,
    end_excl: pd.Timestamp,
    country: str = "US",
) -> SeriesSet:
    """Net revenue and units per complete period for each level; a level whose dimension is
    absent (one store "ALL", no catalog categories) is skipped with a note."""
    periods = complete_periods(pd.Timestamp(start), pd.Timestamp(end_excl), freq)
    notes: list[str] = []
    lines = transactions[["order_ts", "product_id", "store_id", "quantity", "amount"]].copy()
    lines["period"] = period_start(lines["order_ts"], freq)
    lines = lines[lines["period"].isin(periods)]
    if (
        products is not None
        and len(products)
        and "category" in products
        and products["category"].notna().any()
    ):
        catalog = products.dropna(subset=["category"]).drop_duplicates("product_id").set_index("product_id")
        lines["category"] = lines["product_id"].map(catalog["category"]).fillna("unknown")
    parts = []
    for level in levels:
        if level == "total":
            keys = pd.Series("total", index=lines.index)
        else:
            column = DIMENSION[level]
            if column not in lines or lines[column].nunique() <= 1:
                notes.append(f"level '{level}' skipped: {column} is absent or has a single value")
                continue
            keys = lines[column].astype(str)
        grouped = lines.groupby([keys.rename("key"), "period"])[["amount", "quantity"]].sum()
        for key in sorted(grouped.index.get_level_values("key").unique()):
            one = grouped.xs(key, level="key").reindex(periods, fill_value=0.0)
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
    transactions: pd.DataFrame, products: pd.DataFrame | None, freq: str, end_excl: pd.Timestamp
) -> tuple[pd.DataFrame, list[str]]:
    """The catalog's bottom series: net revenue per (product, store, complete period) with the
    product's category; only periods with lines (core/hierarchy.py zero-fills each series from
    its first sale). A product missing from the catalog file goes to category 'unknown'."""
    notes: list[str] = []
    columns = ["product_id", "store_id", "category", "period", "revenue"]
    if transactions.empty:
        return pd.DataFrame(columns=columns), ["no transactions: no catalog series"]
    lines = transactions[["order_ts", "product_id", "store_id", "amount"]].copy()
    lines["period"] = period_start(lines["order_ts"], freq)
    complete = complete_periods(lines["period"].min(), pd.Timestamp(end_excl), freq)
    lines = lines[lines["period"].isin(complete)]
    categories = pd.Series(dtype=object)
    if products is not None and len(products) and "category" in products:
        categories = products.dropna(subset=["category"]).drop_duplicates("product_id")
        categories = categories.set_index("product_id")["category"].astype(str)
    lines["category"] = lines["product_id"].map(categories).fillna("unknown")
    unknown = lines.loc[lines["category"] == "unknown", "product_id"].nunique()
    if unknown:
        notes.append(f"{unknown} products without a category in the products source: category 'unknown'")
    out = lines.groupby(["product_id", "store_id", "category", "period"], as_index=False, observed=True)
    out = out["amount"].sum().rename(columns={"amount": "revenue"})
    out[["product_id", "store_id", "category"]] = out[["product_id", "store_id", "category"]].astype(str)
    return out[columns], notes
