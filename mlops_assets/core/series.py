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

WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
# weekly periods end on the weekday the feed stamps (forecast.week_ends, or detected from the
# lines: a feed of weekly totals stamped on Fridays has weeks Saturday..Friday); a feed of
# daily lines gets ISO weeks, Monday..Sunday. A period is labelled by its first day.
DEFAULT_WEEK_ENDS = "SUN"
STAMPED_SHARE = 0.99  # lines on one weekday for a feed to count as stamped on it
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


def _first_weekday(week_ends: str) -> int:
    """Monday = 0: the weekday a week ending on `week_ends` starts on."""
    return (WEEKDAYS.index(week_ends) + 1) % 7


def period_start(ts: pd.Series, freq: str, week_ends: str = DEFAULT_WEEK_ENDS) -> pd.Series:
    return ts.dt.floor("D") if freq == "D" else ts.dt.to_period(f"W-{week_ends}").dt.start_time


def complete_periods(
    start: pd.Timestamp,
    end_excl: pd.Timestamp,
    freq: str,
    week_ends: str = DEFAULT_WEEK_ENDS,
    stamped: bool = False,
) -> pd.DatetimeIndex:
    """Periods wholly inside [start, end_excl): a week still running is left out. The week that
    ends on the window's last day (the feed's last stamp) is complete. A feed `stamped` with
    weekly totals on the weeks' last day has whole weeks wherever their stamp is in the window,
    so the week of the first stamp is kept even when it began before the window."""
    if freq == "D":
        return pd.date_range(start.floor("D"), end_excl - pd.Timedelta(days=1), freq="D")
    first = start.to_period(f"W-{week_ends}").start_time
    if first < start.floor("D") and not stamped:
        first += pd.Timedelta(weeks=1)
    weeks = pd.date_range(first, end_excl, freq=f"W-{WEEKDAYS[_first_weekday(week_ends)]}")
    return weeks[weeks + pd.Timedelta(weeks=1) <= end_excl]


def stamped_weekday(lines: ibis.Table | pd.DataFrame) -> str | None:
    """The weekday a feed stamps its lines on, when at least STAMPED_SHARE of them fall on one
    (weekly totals dated by their week's last day); None for a feed of daily lines."""
    lines = engine.as_table(lines)
    day = lines.order_ts.day_of_week.index().name("weekday")
    counts = engine.to_frame(lines.group_by(day).aggregate(n=lines.count()))
    if counts.empty:
        return None
    top = counts.loc[counts["n"].idxmax()]
    return WEEKDAYS[int(top["weekday"])] if top["n"] >= STAMPED_SHARE * counts["n"].sum() else None


def week_ends_of(lines: ibis.Table | pd.DataFrame, freq: str, setting: str | None) -> tuple[str, bool, str]:
    """The weekday weekly periods end on, whether the feed stamps its lines on it (weekly
    totals), and why: forecast.week_ends when set, else the weekday the feed stamps, else
    Sunday (ISO weeks). Daily periods need none."""
    if freq == "D":
        return DEFAULT_WEEK_ENDS, False, "daily periods"
    stamped = stamped_weekday(lines)
    if setting:
        return setting, stamped == setting, f"weeks end on {setting} (forecast.week_ends)"
    if stamped:
        why = f"weeks end on {stamped}: at least {STAMPED_SHARE:.0%} of the lines are stamped on it"
        return stamped, True, why
    return DEFAULT_WEEK_ENDS, False, "weeks run Monday..Sunday: the feed's lines fall on every weekday"


def holiday_window_days(
    country: str, start: pd.Timestamp, end: pd.Timestamp, lo: int, hi: int
) -> list[tuple[pd.Timestamp, str, int]]:
    """(day, 'holiday+offset' key, offset) for each day from start to end that lies `lo`..`hi`
    days from a public holiday of `country` (a day near two holidays appears once for each).
    "(observed)" days keep their own name: the shifted day off is not the usual date."""
    cal = holidays.country_holidays(country, years=list(range(start.year - 1, end.year + 2)))
    out = []
    for day, name in sorted(cal.items()):
        for offset in range(lo, hi + 1):
            when = pd.Timestamp(day) + pd.Timedelta(days=offset)
            if start <= when <= end:
                out.append((when, f"{name}{offset:+d}", offset))
    return out


def calendar_features(periods: pd.DatetimeIndex, freq: str, country: str) -> pd.DataFrame:
    """Day of week (daily series) and the number of public holidays in the period."""
    cal = holidays.country_holidays(country, years=sorted({*periods.year, *(periods.year + 1)}))
    days = pd.DatetimeIndex(sorted(pd.Timestamp(d) for d in cal))
    span = 1 if freq == "D" else 7
    counts = sum((periods + pd.Timedelta(days=k)).isin(days).astype(int) for k in range(span))
    return pd.DataFrame(
        {"period": periods, "day_of_week": periods.dayofweek if freq == "D" else -1, "holidays": counts}
    )


def _period(ts, freq: str, week_ends: str = DEFAULT_WEEK_ENDS):
    """The period an Ibis timestamp falls in: its day, or its week's first day."""
    day = ts.truncate("D")
    if freq == "D":
        return day
    back = (day.day_of_week.index() - _first_weekday(week_ends) + 7) % 7
    return (day - back.as_interval("D")).cast("timestamp")


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
    week_ends: str = DEFAULT_WEEK_ENDS,
) -> ibis.Table:
    """Net revenue (`amount`) and units (`quantity`) per (store, category, period) of the lines
    in periods first..last, exact: the one line-level query behind every level of the sales
    series. Returned as a small in-memory table (one row per store, category and period)."""
    lines = engine.as_table(lines)
    lines = lines.mutate(period=_period(lines.order_ts, freq, week_ends))
    lines = _with_category(lines, categories_of(products))
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
    week_ends: str = DEFAULT_WEEK_ENDS,
    stamped: bool = False,
) -> SeriesSet:
    """Net revenue and units per complete period for each level; a level whose dimension is
    absent (one store "ALL", no catalog categories) is skipped with a note. `lines`: silver
    order lines on any Ibis backend; only their totals per store, category and period leave it."""
    periods = complete_periods(pd.Timestamp(start), pd.Timestamp(end_excl), freq, week_ends, stamped)
    notes: list[str] = []
    totals = None
    if len(periods):
        totals = period_totals(lines, products, freq, periods[0], periods[-1], week_ends)
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
    lines: ibis.Table | pd.DataFrame,
    products: pd.DataFrame | None,
    freq: str,
    end_excl: pd.Timestamp,
    week_ends: str = DEFAULT_WEEK_ENDS,
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
    first = period_start(pd.Series([pd.Timestamp(first_ts)]), freq, week_ends).iloc[0]
    complete = complete_periods(first, pd.Timestamp(end_excl), freq, week_ends)
    if not len(complete):
        return pd.DataFrame(columns=columns), notes
    categories = categories_of(products)
    if categories is None:
        categories = pd.DataFrame({"product_id": pd.Series(dtype=str), "category": pd.Series(dtype=str)})
    lines = _with_category(lines.mutate(period=_period(lines.order_ts, freq, week_ends)), categories)
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
