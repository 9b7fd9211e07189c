"""Point-in-time feature retrieval: weekly snapshots (the offline store), an as-of join for
training sets, and an in-memory online index for serving. Both read the same tables that one
set of feature functions wrote, so training and serving see identical values.

    store = FeatureStore.from_warehouse("data/warehouse.duckdb")
    train = store.get_historical_features(labels[["customer_id", "event_ts"]], "customer")
    online = OnlineFeatureStore.from_warehouse("data/warehouse.duckdb")
    online.get_online_features(["C000561", "C001295"], "customer")  # {column: [values]}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa

from mlops_assets.core import warehouse
from mlops_assets.core.customer_features import customer_columns, customer_features
from mlops_assets.core.customer_state import CustomerState
from mlops_assets.core.feature_registry import (
    AS_OF,
    ENTITY,
    VERSION,
    conform_arrow,
    features_of,
    group_version,
)
from mlops_assets.core.line_features import DailyTables
from mlops_assets.core.product_features import product_features
from mlops_assets.core.schemas import TEXT
from mlops_assets.core.warehouse import read_table

EVENT_TS = "event_ts"
# warehouse tables (schema.table) the stores read; the feature assets write them
TABLES = {
    "customer": ("features.customer_features", "features.customer_feature_snapshots"),
    "product": ("features.product_features", "features.product_feature_snapshots"),
}
SOURCES = {
    "transactions": "silver.silver_transactions",
    "products": "bronze.bronze_products",
    "inventory": "bronze.bronze_inventory",
}


def latest_complete_day(window_end_excl: pd.Timestamp, now: pd.Timestamp) -> pd.Timestamp:
    """Features hold as of midnight after the last day that has ended (and is in the window)."""
    return min(pd.Timestamp(window_end_excl), pd.Timestamp(now).floor("D"))


def snapshot_dates(start: pd.Timestamp, as_of: pd.Timestamp, freq: str = "W-MON") -> list[pd.Timestamp]:
    """Weekly instants after `start`, and `as_of` itself (the latest snapshot)."""
    weekly = pd.date_range(pd.Timestamp(start), pd.Timestamp(as_of), freq=freq, inclusive="right")
    return sorted({*weekly, pd.Timestamp(as_of)})


@dataclass
class Sources:
    """The inputs of the feature functions: silver lines (a frame or an Ibis table; None when
    `daily` holds them already), catalog and inventory (both optional), and the lines reduced to
    a row per entity and day (core/line_features.py), built once for every instant."""

    transactions: pd.DataFrame | ibis.Table | None
    products: pd.DataFrame | None = None
    inventory: pd.DataFrame | None = None
    daily: DailyTables | None = field(default=None, repr=False)
    _state: CustomerState | None = field(default=None, repr=False)

    def tables(self, group: str | None = None) -> DailyTables:
        """The lines' reduced tables: staged once in the engine when the lines are a table there
        (the warehouse's silver: the running totals query them several times, and reducing a
        chain's lines again for each query costs more than staging them), else as expressions.
        Staged unsorted: these sources answer for an instant or a few (snapshots build their own,
        in day order, for a hundred)."""
        if self.daily is None:
            if isinstance(self.transactions, ibis.Table):
                backend = self.transactions.get_backend()
                self.daily = DailyTables.build(
                    backend, self.transactions, self.products, group, many=False
                )
            else:
                self.daily = DailyTables.of(self.transactions, self.products)
        return self.daily

    def _customer_state(self) -> CustomerState:
        """The customers' running totals, advanced instant by instant (built once)."""
        if self._state is None:
            self._state = CustomerState(self.tables("customer"), self.products)
        return self._state

    def features(self, group: str, as_of: pd.Timestamp) -> pd.DataFrame:
        as_of = pd.Timestamp(as_of)
        midnight = as_of == as_of.floor("D")  # the reduced tables answer for midnights
        lines = None if midnight else self.transactions
        if group == "customer":
            state = self._customer_state() if midnight else None
            return customer_features(lines, as_of, self.products, state=state)
        daily = self.tables(group) if midnight else None
        return product_features(lines, self.products, self.inventory, as_of, daily=daily)

    def snapshot(self, group: str, as_of: pd.Timestamp) -> pd.DataFrame:
        """Features as of one instant, stamped with that instant and the group's version."""
        table = self.features(group, as_of)
        table.insert(1, AS_OF, pd.Timestamp(as_of))
        table.insert(2, VERSION, pd.Series(group_version(group), index=table.index, dtype=TEXT))
        return table

    def snapshot_job(self, group: str, as_of: pd.Timestamp, stamps: dict[str, str]) -> Callable[[], pa.Table]:
        """`snapshot` as an Arrow table with `stamps` (name -> text) as constant columns after
        the instant and version, in two parts: what reads the customers' running totals runs
        now, and the function returned finishes the table (the CLV fit and prediction, the
        Arrow columns) in any thread, while the totals move on to the next instant. Customers'
        columns go to Arrow without a pandas frame, which at a million rows costs a second per
        instant in copies."""
        as_of = pd.Timestamp(as_of)
        if group != "customer" or as_of != as_of.floor("D"):
            frame = self.snapshot(group, as_of)
            for name, text in stamps.items():
                frame[name] = pd.Series(text, index=frame.index, dtype=TEXT)
            table = pa.Table.from_pandas(frame, preserve_index=False)
            return lambda: table
        state = self._customer_state()
        state.advance(as_of)
        columns, sources = customer_columns(state, deferred=True)
        n = len(columns[ENTITY[group]])

        def finish() -> pa.Table:
            columns["clv_12m"] = columns["clv_12m"]()
            instant = {
                AS_OF: repeated(as_of.value, pa.timestamp("ns"), n),
                VERSION: repeated(group_version(group), pa.large_string(), n),
            }
            table = conform_arrow(columns, group, sources, instant)
            for name, text in stamps.items():
                table = table.append_column(name, repeated(text, pa.large_string(), n))
            return table

        return finish

    def snapshots(self, group: str, dates: Iterable[pd.Timestamp]) -> pd.DataFrame:
        return pd.concat([self.snapshot(group, d) for d in dates], ignore_index=True)


def repeated(value, kind: pa.DataType, n: int) -> pa.Array:
    """`value` n times as an Arrow array of `kind`; text from two buffers (Arrow's take and
    repeat copy a million strings one at a time, a second per column of a chain's instant)."""
    if pa.types.is_large_string(kind):
        data = str(value).encode()
        offsets = pa.py_buffer(np.arange(n + 1, dtype=np.int64) * len(data))
        return pa.LargeStringArray.from_buffers(n, offsets, pa.py_buffer(data * n))
    return pa.repeat(pa.scalar(value, kind), n)


@dataclass
class FeatureStore:
    """The offline store: snapshots per group (frames, or a function that reads the rows of some
    entities), and the sources to compute what they lack (or a function that reads the lines
    before an instant)."""

    snapshots: dict[str, pd.DataFrame] | Callable[[str, pd.Series], pd.DataFrame | None]
    sources: Sources | Callable[[pd.Timestamp], Sources] | None = None

    @classmethod
    def from_warehouse(cls, database: str | Path) -> FeatureStore:
        """A store over the warehouse that reads, per request, only the snapshot rows of the
        requested entities (a chain's snapshot tables hold a row per entity and week), and for
        events before the first snapshot only the lines before them."""
        return cls(
            lambda group, ids: _snapshots_of(database, group, ids),
            lambda before: _read_sources(database, before),
        )

    def _sources(self, before: pd.Timestamp) -> Sources:
        if self.sources is None:
            raise ValueError("no snapshot is old enough and no sources to compute features from")
        return self.sources(before) if callable(self.sources) else self.sources

    def get_historical_features(self, entity_df: pd.DataFrame, group: str) -> pd.DataFrame:
        """Each (entity, event_ts) row gets the features as they were at event_ts: the latest
        snapshot taken at or before it (built from data strictly before the snapshot), else a
        direct computation as of the start of event_ts's day; never data at or after event_ts.
        Adds `feature_as_of`, the instant the values hold for."""
        key = ENTITY[group]
        missing = {key, EVENT_TS} - set(entity_df.columns)
        if missing:
            raise KeyError(f"entity_df needs columns {sorted(missing)}")
        names = [f.name for f in features_of(group)]
        rows = entity_df.reset_index(drop=True).assign(_row=lambda d: np.arange(len(d)))
        rows[EVENT_TS] = pd.to_datetime(rows[EVENT_TS], format="ISO8601").astype("datetime64[ns]")
        rows[key] = rows[key].astype(TEXT)
        snaps = self.snapshots(group, rows[key]) if callable(self.snapshots) else self.snapshots.get(group)
        if snaps is not None:
            snaps = snaps[snaps[VERSION] == group_version(group)]  # never serve an old definition
        first = snaps[AS_OF].min() if snaps is not None and len(snaps) else pd.Timestamp.max
        early = rows[EVENT_TS] < first
        parts = []
        if (~early).any():
            # the latest snapshot at or before each event (a snapshot at t used data before t);
            # an entity missing from it had no history yet, and gets null features
            dates = np.sort(snaps[AS_OF].unique())
            late = rows[~early].copy()
            late[AS_OF] = dates[np.searchsorted(dates, late[EVENT_TS].to_numpy(), side="right") - 1]
            cols = [key, AS_OF, *[c for c in names if c in snaps.columns]]
            parts.append(late.merge(snaps[cols], on=[key, AS_OF], how="left"))
        if early.any():
            parts.append(self._direct(rows[early], group))
        out = pd.concat(parts, ignore_index=True).sort_values("_row").drop(columns="_row")
        return out.reset_index(drop=True)

    def _direct(self, rows: pd.DataFrame, group: str) -> pd.DataFrame:
        days = rows[EVENT_TS].dt.floor("D")
        key, sources, parts = ENTITY[group], self._sources(days.max()), []
        for day, chunk in rows.groupby(days, sort=True):
            table = sources.features(group, day)
            parts.append(chunk.assign(**{AS_OF: day}).merge(table, on=key, how="left"))
        return pd.concat(parts, ignore_index=True)


class OnlineFeatureStore:
    """Latest feature values per entity, held in memory as one tuple per entity: a lookup is a
    dict access, never a warehouse query or a DataFrame build, so it stays in microseconds
    under many concurrent threads (bench/bench_features.py)."""

    def __init__(self, tables: dict[str, pd.DataFrame]):
        self._columns: dict[str, list[str]] = {}
        self._dtypes: dict[str, pd.Series] = {}
        self._rows: dict[str, dict[str, tuple]] = {}
        self._missing: dict[str, tuple] = {}
        for group, table in tables.items():
            key = ENTITY[group]
            cols = [c for c in table.columns if c != key]
            values = [[None if pd.isna(v) else v for v in table[c].tolist()] for c in cols]
            self._columns[group] = cols
            self._dtypes[group] = table.dtypes
            self._rows[group] = dict(zip(table[key].tolist(), zip(*values, strict=True), strict=True))
            self._missing[group] = (None,) * len(cols)

    @classmethod
    def from_warehouse(cls, database: str | Path) -> OnlineFeatureStore:
        tables = {g: read_table(database, latest) for g, (latest, _) in TABLES.items()}
        return cls({g: t for g, t in tables.items() if t is not None})

    def get_online_features(self, ids: Iterable[str], group: str) -> dict[str, list]:
        """Column -> values for the requested ids, in order; unknown ids get None values."""
        ids = list(ids)
        table, missing = self._rows[group], self._missing[group]
        rows = [table.get(i, missing) for i in ids]
        columns = zip(*rows, strict=True) if rows else [()] * len(self._columns[group])
        return {
            ENTITY[group]: ids,
            **{c: list(v) for c, v in zip(self._columns[group], columns, strict=True)},
        }

    def get_online_frame(self, ids: Iterable[str], group: str) -> pd.DataFrame:
        """The same values as a DataFrame with the table's dtypes (slower: for batch use)."""
        frame = pd.DataFrame(self.get_online_features(ids, group))
        dtypes = self._dtypes[group].to_dict()
        # an unknown id's null cannot live in an int64 column: leave those columns to pandas
        return frame.astype(
            {c: d for c, d in dtypes.items() if not (d.kind in "iub" and frame[c].isna().any())}
        )


def _snapshots_of(database: str | Path, group: str, ids: pd.Series) -> pd.DataFrame | None:
    """The stored snapshot rows of the entities `ids` (all their instants), None without a table."""
    key, table = ENTITY[group], TABLES[group][1]
    wanted = pd.DataFrame({key: pd.unique(ids.astype(object))})
    with warehouse.connect(database, [table]) as con:
        if not warehouse.table_exists(con, table):
            return None
        con.register("wanted_entities", wanted)
        found = con.sql(f"select * from {table} where {key} in (select {key} from wanted_entities)")
        return warehouse.to_pandas(found.to_arrow_table())


def _read_sources(database: str | Path, before: pd.Timestamp) -> Sources:
    """The catalog, the inventory, and the silver lines before `before` (the days features as
    of an early event read), not the whole log."""
    frames = {name: read_table(database, table) for name, table in SOURCES.items() if name != "transactions"}
    lines = read_table(
        database,
        SOURCES["transactions"],
        "select * from {table} where order_ts < " + f"'{before}'::timestamp",
    )
    if lines is None:
        raise ValueError(f"{database} has no {SOURCES['transactions']}: materialize silver first")
    return Sources(lines, **frames)


def _default_warehouse() -> Path:
    from mlops_assets.settings import load_settings  # the data directory of MLOPS_DATA_DIR

    return load_settings().warehouse_path


def get_historical_features(
    entity_df: pd.DataFrame, group: str, database: str | Path | None = None
) -> pd.DataFrame:
    """Point-in-time features for (entity id, event_ts) rows, from the warehouse's snapshots."""
    return FeatureStore.from_warehouse(database or _default_warehouse()).get_historical_features(
        entity_df, group
    )


_ONLINE: dict[str, tuple[int, OnlineFeatureStore]] = {}


def get_online_features(
    ids: Iterable[str], group: str, database: str | Path | None = None
) -> dict[str, list]:
    """Latest features for a batch of ids ({column: values}), from an in-memory index of the
    warehouse, reloaded when the warehouse file changes (a new materialization)."""
    path = str(database or _default_warehouse())
    stamp = warehouse.stamp(path, [latest for latest, _ in TABLES.values()])
    cached = _ONLINE.get(path)
    if cached is None or cached[0] != stamp:
        cached = _ONLINE[path] = (stamp, OnlineFeatureStore.from_warehouse(path))
    return cached[1].get_online_features(ids, group)
