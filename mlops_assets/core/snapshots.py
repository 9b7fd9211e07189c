"""Incremental snapshots of the offline store, computed in the engine and written to the
warehouse without ever holding all of them: each instant's rows carry a digest of the inputs
its features read; a refresh computes only the instants whose digest changed (from the lines
reduced once to a row per entity and day, core/line_features.py), stages each as Parquet, and
replaces exactly those instants in the warehouse table, leaving the others where they are."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import ibis
import ibis.expr.datatypes as dt
import numpy as np
import pandas as pd

from mlops_assets.core import engine, warehouse
from mlops_assets.core.feature_registry import AS_OF, group_version
from mlops_assets.core.feature_store import TABLES, Sources
from mlops_assets.core.line_features import DailyTables
from mlops_assets.core.schemas import TEXT

DIGEST = "inputs_digest"  # snapshot column: the digest of the inputs it was computed from
MOD = 2**64


def line_digests(lines: ibis.Table, dates: list[pd.Timestamp]) -> list[str]:
    """Per instant (a midnight): the count and the order-free sum of the row hashes of the lines
    strictly before it, from one pass that sums per day in the engine."""
    row = ibis.struct({c: lines[c] for c in lines.columns}).hash().cast(dt.Decimal(38, 0))
    per_day = lines.group_by(lines.order_ts.truncate("D").name("day")).aggregate(n=lines.count(), h=row.sum())
    per_day = engine.to_frame(per_day.order_by("day"))
    days = per_day["day"].astype("datetime64[ns]").to_numpy()
    counts = np.concatenate([[0], np.cumsum(per_day["n"].to_numpy(dtype=np.int64))])
    sums = [0]
    for h in per_day["h"]:  # exact integers: Python's, modulo 2**64
        sums.append((sums[-1] + int(h)) % MOD)
    ends = np.searchsorted(days, np.asarray(dates, dtype="datetime64[ns]"), side="left")
    return [f"{int(counts[k])}-{sums[k]:x}" for k in ends]


def _table_hash(frame: pd.DataFrame) -> str:
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)
    return f"{len(frame)}-{int(hashes.sum(dtype=np.uint64)):x}"


def _cumulative(frame: pd.DataFrame, ts: str, dates: list[pd.Timestamp]) -> list[str]:
    """For each instant, count and hash-sum of the rows with `ts` strictly before it."""
    order = np.argsort(frame[ts].to_numpy(), kind="stable")
    stamps = frame[ts].to_numpy()[order]
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)[order]
    sums = np.concatenate([[0], np.cumsum(hashes, dtype=np.uint64)]).astype(np.uint64)
    ends = np.searchsorted(stamps, np.asarray(dates, dtype=stamps.dtype), side="left")
    return [f"{int(k)}-{int(sums[k]):x}" for k in ends]


def digests(
    lines: ibis.Table, products: pd.DataFrame | None, inventory: pd.DataFrame | None, group: str, dates
) -> list[str]:
    """Per instant, a digest of everything the group's features as of it read: the lines
    strictly before it, the catalog, the inventory snapshots before it (products), and the
    feature version. Equal digests mean equal features, so a stored snapshot is kept."""
    parts = [line_digests(lines, dates)]
    if products is not None:
        parts.append([_table_hash(products)] * len(dates))
    if group == "product" and inventory is not None:
        parts.append(_cumulative(inventory, "snapshot_date", dates))
    version = group_version(group)
    return [":".join([version, *p]) for p in zip(*parts, strict=True)]


def stored_digests(con: ibis.BaseBackend, group: str) -> dict[pd.Timestamp, str]:
    """Instant -> the digest its stored rows were computed from (one query, a row per instant)."""
    table = engine.table(con, TABLES[group][1])
    if table is None or DIGEST not in table.columns:
        return {}
    per = table.group_by(AS_OF).aggregate(low=table[DIGEST].min(), high=table[DIGEST].max())
    per = engine.to_frame(per)
    same = per[per["low"] == per["high"]]
    return dict(zip((pd.Timestamp(t) for t in same[AS_OF]), same["low"], strict=True))


@dataclass
class Refresh:
    reused: list[pd.Timestamp]
    computed: list[pd.Timestamp]
    rows: dict[pd.Timestamp, int] = field(default_factory=dict)  # rows of each computed instant
    columns: pd.DataFrame | None = None  # an empty frame with the table's columns and dtypes


def refresh_snapshots(
    database: str | Path,
    group: str,
    dates: list[pd.Timestamp],
    products: pd.DataFrame | None,
    inventory: pd.DataFrame | None,
) -> Refresh:
    """Bring the warehouse's snapshot table of `group` to exactly the instants `dates`: the
    silver lines are read in the engine; instants whose inputs' digest matches the stored one
    stay as stored; the others are computed one at a time (a row per entity in memory) and
    replace theirs; instants no longer wanted are dropped."""
    database = Path(database)
    database.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".snapshots-", dir=database.parent) as stage:
        with engine.connect(database) as con:
            lines = engine.silver_or_empty(con)
            stamps = dict(zip(dates, digests(lines, products, inventory, group, dates), strict=True))
            stored = stored_digests(con, group)
            todo = [d for d in dates if stored.get(d) != stamps[d]]
            done = Refresh([d for d in dates if d not in todo], todo)
            files = []
            if todo:
                sources = Sources(None, products, inventory, DailyTables.build(con, lines, products, group))
                for i, when in enumerate(todo):
                    table = sources.snapshot(group, when)
                    table[DIGEST] = pd.Series(stamps[when], index=table.index, dtype=TEXT)
                    files.append(Path(stage) / f"{i:05d}.parquet")
                    table.to_parquet(files[-1], index=False, compression="lz4")  # staged: fast over small
                    done.rows[when] = len(table)
                    done.columns = table.head(0) if done.columns is None else done.columns
        warehouse.replace_rows(database, TABLES[group][1], files, AS_OF, todo, dates)
    return done


def instant_counts(database: str | Path, group: str) -> pd.DataFrame:
    """Rows per instant of the stored snapshot table (what the UI shows about it)."""
    sql = f"select {AS_OF}, count(*) as entities from {{table}} group by 1 order by 1"
    table = warehouse.read_table(database, TABLES[group][1], sql)
    return table if table is not None else pd.DataFrame({AS_OF: [], "entities": []})
