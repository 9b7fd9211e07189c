"""Every customer's running totals over the days before an instant, advanced instant by instant.

Snapshots ask for the features as of a hundred weekly instants. Rather than summing all the days
before each of them again, the state holds a row per customer (arrays, in the order of their
first line) and each step adds the days since the last instant, and subtracts the days that left
the 365-day window: two small queries of a week of (customer, day) rows each. Money and
quantities are integers of billionths (engine.nano_sum), so the totals are exact and the state
reached by many small steps equals the one of a single step: the latest snapshot and the
feature table agree to the bit.
"""

from __future__ import annotations

import json
import uuid

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlops_assets.core import clv, engine
from mlops_assets.core.line_features import DAY, DailyTables, categories_of

YEAR = pd.Timedelta(days=365)
LOW, HIGH = np.iinfo(np.int64).min, np.iinfo(np.int64).max
POS = "_position"  # a customer's row in the state's arrays
SUMS = ("orders", "gross", "net", "bought", "returned", "distinct", "purchase_days")
LEFT = ("orders", "net")  # the sums of the days that left the 365-day window
MARKS = {"first_buy": HIGH, "last_buy": LOW, "first_day": HIGH, "last_day": LOW, "first_day_gross": 0}


def _ns(values: pd.Series, missing: int) -> np.ndarray:
    """Timestamps as int64 nanoseconds, `missing` where null."""
    # a datetime64 column as it is: to_datetime first iterates rows to decide on a cache
    # (16 ms a week's 75k customers, 12 s a chain's snapshots)
    plain = isinstance(values.dtype, np.dtype) and values.dtype.kind == "M"
    stamps = (values if plain else pd.to_datetime(values)).astype("datetime64[ns]")
    return np.where(stamps.isna(), missing, stamps.to_numpy().view("int64"))


def _within_range(totals: pd.DataFrame) -> None:
    """Refuse, with a sentence, a customer whose all-time totals would overflow the billionths."""
    for column in ("gross", "net", "bought", "returned"):
        worst = totals[column].abs()
        if len(worst) and worst.max() >= 2**62:
            who = totals["customer_id"].iloc[int(worst.to_numpy().argmax())]
            raise ValueError(
                f"customer {who}'s {column} totals {worst.max() / engine.NANO:.3g} over the history: above "
                f"{2**62 / engine.NANO:.3g}, the most the features add up exactly (in billionths)"
            )


def _text(values: pd.Series) -> pa.Array:
    """Ids as one Arrow string array (a text column of a frame may come back chunked)."""
    array = pa.array(values, pa.string())
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _categories(daily: DailyTables, products: pd.DataFrame | None) -> np.ndarray | None:
    """The catalog's categories, in the order of the state's spend columns (None without)."""
    cats = categories_of(products) if daily.categories is not None else None
    return pd.factorize(cats["category"])[1].astype(object) if cats is not None else None


def _firsts(days: ibis.Table) -> ibis.Table:
    """Per customer of the (customer, day) rows: the first line's time, and the sums of the
    absolute amounts and quantities (for _within_range)."""
    largest = {c: days[c].abs().cast("float64").sum() for c in ("gross", "net", "bought", "returned")}
    return days.group_by("customer_id").aggregate(first_ts=days.first_ts.min(), **largest)


def _between(table: ibis.Table, low: pd.Timestamp | None, high: pd.Timestamp) -> ibis.Table:
    keep = table[DAY] < high.to_pydatetime()
    if low is not None:
        keep &= table[DAY] >= low.to_pydatetime()
    return table.filter(keep)


class CustomerState:
    """Running totals per customer over the days before `self.at` (None: no day yet)."""

    def __init__(self, daily: DailyTables, products: pd.DataFrame | None):
        firsts = engine.to_frame(_firsts(daily.customers).order_by(["first_ts", "customer_id"]))
        _within_range(firsts)
        self.daily = daily
        self.categories = _categories(daily, products)
        self.resumed_at: pd.Timestamp | None = None  # the checkpoint's instant, for a resumed state
        self._customers(_text(firsts["customer_id"]), _ns(firsts["first_ts"], HIGH))
        self._reset()

    def _customers(self, ids: pa.Array, first_ts: np.ndarray) -> None:
        self.ids_arrow = ids  # the feature tables' id column, sliced
        self.ids = pd.Index(ids.to_pandas(), dtype=object)
        # each customer's position in the arrays, joined in the engine: a step returns
        # positions, not a million ids for pandas to look up
        self._positions = ibis.memtable(pa.table({"customer_id": ids, POS: np.arange(len(ids))}))
        self._days, self._spend_days = self._located()
        self.first_ts = first_ts
        self.by_id = pc.sort_indices(ids).to_numpy()  # for the CLV rows (stable, as numpy's)
        self.buckets: np.ndarray | None = None  # clv.id_buckets of each customer, once needed

    def _located(self) -> tuple[ibis.Table, ibis.Table | None]:
        """The customers' day tables (per day, and per day and category) with each customer's
        position (POS) for the id. For many instants they are joined once and staged in day
        order, so that each instant's queries group by an integer and join nothing: joining a
        week's rows with a million ids at each query was three quarters of a snapshot's
        advance at 20M lines. For one instant the join stays in its query."""
        located = []
        for name, days in (("days", self.daily.customers), ("spend", self.daily.categories)):
            placed = None if days is None else days.join(self._positions, "customer_id").drop("customer_id")
            if placed is not None and self.daily.many:
                name = f"located_{name}_{uuid.uuid4().hex[:8]}"
                placed = days.get_backend().create_table(name, placed.order_by(DAY))
            located.append(placed)
        return located[0], located[1]

    def _reset(self) -> None:
        n, k = len(self.ids), 0 if self.categories is None else len(self.categories)
        self.at: pd.Timestamp | None = None
        self.sums = {c: np.zeros(n, np.int64) for c in SUMS}
        self.left = {c: np.zeros(n, np.int64) for c in LEFT}  # days before at - 365
        for c, fill in MARKS.items():  # first_buy, last_buy...: times (ns), the first day's gross
            setattr(self, c, np.full(n, fill, np.int64))
        self.spend = np.zeros((n, k), np.int64)

    # ---- checkpoints: the state of the customers seen, as an Arrow table, and back ----------

    def to_arrow(self) -> pa.Table:
        """The totals of the customers seen before `at` (a row each, in state order)."""
        n = self.seen()
        cols = {"customer_id": self.ids_arrow[:n], "first_ts": self.first_ts[:n]}
        cols |= {f"sum_{c}": self.sums[c][:n] for c in SUMS} | {f"left_{c}": self.left[c][:n] for c in LEFT}
        cols |= {c: getattr(self, c)[:n] for c in MARKS}
        cols |= {f"spend_{j}": self.spend[:n, j] for j in range(self.spend.shape[1])}
        cats = [] if self.categories is None else [str(c) for c in self.categories]
        meta = {"at": self.at.isoformat(), "categories": json.dumps(cats)}
        return pa.table(cols).replace_schema_metadata(meta)

    @classmethod
    def resume(cls, saved: pa.Table, daily: DailyTables, products: pd.DataFrame | None) -> CustomerState:
        """The state a checkpoint (`to_arrow`) holds, to advance over `daily`: tables that hold
        at least the days from the checkpoint's instant on, and those a year before them.
        Customers first seen after the checkpoint join at the end, as they would have."""
        self = cls.__new__(cls)
        self.daily = daily
        self.categories = _categories(daily, products)
        meta = {k.decode(): v.decode() for k, v in (saved.schema.metadata or {}).items()}
        mine = [] if self.categories is None else [str(c) for c in self.categories]
        if json.loads(meta["categories"]) != mine:
            raise ValueError("the checkpoint was taken over another catalog's categories")
        self.at = self.resumed_at = pd.Timestamp(meta["at"])
        known = saved["customer_id"].combine_chunks().cast(pa.string())
        positions = ibis.memtable(pa.table({"customer_id": known}))
        # customers first seen from the checkpoint on, in the order of their first line
        days = daily.customers
        fresh = _firsts(days.filter(days[DAY] >= self.at.to_pydatetime()))
        fresh = fresh.anti_join(positions, "customer_id").order_by(["first_ts", "customer_id"])
        fresh = engine.to_frame(fresh)
        _within_range(fresh)
        grow = len(fresh)
        ids = pa.concat_arrays([known, _text(fresh["customer_id"])])
        self._customers(ids, np.concatenate([saved["first_ts"].to_numpy(), _ns(fresh["first_ts"], HIGH)]))

        def column(name: str, fill: int) -> np.ndarray:
            return np.concatenate([saved[name].to_numpy(), np.full(grow, fill, np.int64)])

        self.sums = {c: column(f"sum_{c}", 0) for c in SUMS}
        self.left = {c: column(f"left_{c}", 0) for c in LEFT}
        for c, fill in MARKS.items():
            setattr(self, c, column(c, fill))
        k = 0 if self.categories is None else len(self.categories)
        self.spend = np.zeros((len(saved) + grow, k), np.int64)
        for j in range(k):
            self.spend[: len(saved), j] = saved[f"spend_{j}"].to_numpy()
        return self

    def advance(self, as_of: pd.Timestamp) -> None:
        """Hold the totals over the days before `as_of` (a midnight; an earlier one starts over)."""
        as_of = pd.Timestamp(as_of)
        if self.at is not None and as_of < self.at:
            if self.resumed_at is not None:
                raise ValueError(f"a state resumed at {self.resumed_at} cannot go back to {as_of}")
            self._reset()
        since = self.at
        self._add(since, as_of)
        self._leave(None if since is None else since - YEAR, as_of - YEAR)
        self.at = as_of

    def _add(self, low: pd.Timestamp | None, high: pd.Timestamp) -> None:
        days = _between(self._days, low, high)
        buy = days.buy_lines > 0
        step = days.group_by(POS).aggregate(
            first_buy=days.first_buy_ts.min(),
            last_buy=days.last_buy_ts.max(),
            orders=days.new_orders.sum(),
            gross=days.gross.sum(),
            net=days.net.sum(),
            bought=days.bought.sum(),
            returned=days.returned.sum(),
            distinct=days.new_products.sum(),
            purchase_days=buy.sum(),
            first_day=days[DAY].min(where=buy),
            last_day=days[DAY].max(where=buy),
            first_day_gross=days.gross.argmin(days[DAY], where=buy),
        )
        step = engine.to_frame(step)
        if step.empty:
            return
        at = step[POS].to_numpy()
        for c in SUMS:
            self.sums[c][at] += step[c].fillna(0).to_numpy(dtype=np.int64)
        if self.resumed_at is not None:  # a fresh state checked every customer's totals up front
            _within_range(self._totals(at))
        self.first_buy[at] = np.minimum(self.first_buy[at], _ns(step["first_buy"], HIGH))
        self.last_buy[at] = np.maximum(self.last_buy[at], _ns(step["last_buy"], LOW))
        first_day = _ns(step["first_day"], HIGH)
        new = (self.first_day[at] == HIGH) & (first_day != HIGH)  # a first purchase day, now
        self.first_day_gross[at[new]] = step["first_day_gross"].to_numpy()[new].astype(np.int64)
        self.first_day[at] = np.minimum(self.first_day[at], first_day)
        self.last_day[at] = np.maximum(self.last_day[at], _ns(step["last_day"], LOW))
        if self.categories is not None:
            self._add_spend(low, high)

    def _totals(self, at: np.ndarray) -> pd.DataFrame:
        sums = {c: np.abs(self.sums[c][at]).astype(float) for c in ("gross", "net", "bought", "returned")}
        return pd.DataFrame({"customer_id": self.ids[at], **sums})

    def _add_spend(self, low: pd.Timestamp | None, high: pd.Timestamp) -> None:
        days = _between(self._spend_days, low, high)
        step = engine.to_frame(days.group_by([POS, "category"]).aggregate(spend=days.spend.sum()))
        cat = pd.Index(self.categories).get_indexer(step["category"].astype(object))
        # a (customer, category) pair once per step (grouped): plain fancy-index adding is exact
        self.spend[step[POS].to_numpy(), cat] += step["spend"].to_numpy(dtype=np.int64)

    def _leave(self, low: pd.Timestamp | None, high: pd.Timestamp) -> None:
        """The days that left the 365-day window: their orders and net revenue."""
        days = _between(self._days, low, high)
        step = engine.to_frame(days.group_by(POS).aggregate(orders=days.new_orders.sum(), net=days.net.sum()))
        if step.empty:
            return
        at = step[POS].to_numpy()
        for c in LEFT:
            self.left[c][at] += step[c].fillna(0).to_numpy(dtype=np.int64)

    def seen(self) -> int:
        """How many customers (a prefix of `ids`) have a line before the instant."""
        return int(np.searchsorted(self.first_ts, self.at.value, side="left"))

    def rfm(self, positions: bool = False) -> pd.DataFrame | tuple[pd.DataFrame, np.ndarray]:
        """The CLV models' input (clv.rfm_summary's frame) of the customers with a purchase, by
        id; with `positions`, also each row's position among the customers seen (first seen
        first)."""
        rows = self.by_id[self.by_id < self.seen()]
        rows = rows[self.sums["purchase_days"][rows] > 0]
        x = self.sums["purchase_days"][rows].astype(float) - 1
        first, last = self.first_day[rows], self.last_day[rows]
        repeat = (self.sums["gross"][rows] - self.first_day_gross[rows]) / engine.NANO
        week = pd.Timedelta(days=7).value
        with np.errstate(divide="ignore", invalid="ignore"):
            m = np.where(x > 0, repeat / x, np.nan)
        block = np.empty((4, len(rows)))  # one float block, as pandas keeps it: no copies
        block[0], block[1], block[2], block[3] = x, (last - first) / week, (self.at.value - first) / week, m
        frame = pd.DataFrame(
            block.T,
            columns=["x", "t_x", "T", "m"],
            # the callers with positions read rows by position: a million-id index is pure cost
            index=None if positions else pd.Index(self.ids[rows], name="customer_id"),
        )
        if len(frame) > clv.MAX_FIT_CUSTOMERS:  # the fit samples: hash each id once, not per instant
            if self.buckets is None:
                self.buckets = clv.id_buckets(self.ids).to_numpy()
            frame[clv.BUCKET] = self.buckets[rows]
        return (frame, rows) if positions else frame
