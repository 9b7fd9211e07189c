"""Nothing published is lost: the days a re-run's feed no longer covers stay as published.

A run rewrites its partitions (months) of bronze, silver, quarantine and the quality report. A
day of those months that was published before and has no line in the files read now (a
re-export that starts later, a file removed from the glob) would be emptied by that rewrite.
Instead its published rows of all four tables are carried into the run's output unchanged, and
the `feed_covers_published_days` check names the days. A day the files still cover is replaced
by what they say now: the files are the authority for the days they carry.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mlops_assets.core.line_rules import REPLAY_KEY
from mlops_assets.core.quality import Split, quality_report
from mlops_assets.core.schemas import CANONICAL, LINEAGE, PARTITION_COLUMN, UNPARSED
from mlops_assets.core.warehouse import connect, table_exists

TABLES = {
    "bronze": "bronze.bronze_transactions",
    "silver": "silver.silver_transactions",
    "quarantined": "silver.quarantined_transactions",
    "report": "quality.data_quality_report",
}


@dataclass
class Kept:
    days: list[pd.Timestamp] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    # kept days the files do carry, every new line of theirs quarantined: day -> new lines
    refused: dict[pd.Timestamp, int] = field(default_factory=dict)

    lines: int = 0  # published lines kept (with_kept sets it: a line that moved is not kept)


def _read(con, table: str, where: str, params: list, columns: str = "*") -> pd.DataFrame | None:
    if not table_exists(con, table):
        return None
    return con.execute(f"select {columns} from {table} where {where}", params).df()


def _days(con, table: str, since: pd.Timestamp, before: pd.Timestamp) -> pd.DataFrame | None:
    """The table's rows whose partition day lies in [since, before)."""
    where = f"{PARTITION_COLUMN} >= ? and {PARTITION_COLUMN} < ?"
    return _read(con, table, where, [since.to_pydatetime(), before.to_pydatetime()])


def uncovered_days(
    database: str | Path,
    covered_days,
    start: pd.Timestamp,
    end: pd.Timestamp,
    refused_days: dict | None = None,
) -> Kept:
    """The published days in [start, end) that the run's new lines (`covered_days`: the days
    they give a silver line) do not cover, with their published rows of the four tables.
    `refused_days` (day -> lines): days whose new lines were all quarantined; such a day is kept
    when it has published silver lines (a bad resend does not empty a good day)."""
    if not Path(database).exists():
        return Kept()
    covered = {pd.Timestamp(d) for d in covered_days}
    refused = {pd.Timestamp(d): n for d, n in (refused_days or {}).items()}
    with connect(database, TABLES.values()) as con:
        if not table_exists(con, TABLES["bronze"]):
            return Kept()
        published = con.execute(
            f"select distinct {PARTITION_COLUMN} from {TABLES['bronze']} "
            f"where {PARTITION_COLUMN} >= ? and {PARTITION_COLUMN} < ?",
            [start.to_pydatetime(), end.to_pydatetime()],
        ).fetchall()
        days = sorted({pd.Timestamp(d) for (d,) in published} - covered)
        if refused and days:
            good = _published_silver_days(con, [d for d in days if d in refused])
            days = [d for d in days if d not in refused or d in good]
        if not days:
            return Kept()
        where = f"{PARTITION_COLUMN} in ({', '.join('?' * len(days))})"
        params = [d.to_pydatetime() for d in days]
        tables = {k: _read(con, t, where, params) for k, t in TABLES.items()}
    kept = Kept(days, {k: v for k, v in tables.items() if v is not None})
    kept.refused = {d: refused[d] for d in days if d in refused}
    return kept


def _published_silver_days(con, days: list[pd.Timestamp]) -> set[pd.Timestamp]:
    if not days or not table_exists(con, TABLES["silver"]):
        return set()
    found = con.execute(
        f"select distinct {PARTITION_COLUMN} from {TABLES['silver']} "
        f"where {PARTITION_COLUMN} in ({', '.join('?' * len(days))})",
        [d.to_pydatetime() for d in days],
    ).fetchall()
    return {pd.Timestamp(d) for (d,) in found}


def _like(frame: pd.DataFrame, model: pd.DataFrame) -> pd.DataFrame:
    """`frame` with `model`'s columns and dtypes (columns it lacks are null)."""
    out = frame.reindex(columns=model.columns)
    for col, dtype in model.dtypes.items():
        with contextlib.suppress(TypeError, ValueError):  # keep it as read: still the same values
            out[col] = out[col].astype(dtype)
    return out


def _row_keys(frame: pd.DataFrame, cols: list[str]) -> pd.Series:
    return pd.util.hash_pandas_object(frame[cols], index=False)


def with_kept(
    bronze: pd.DataFrame, split: Split, kept: Kept, elsewhere: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, Split]:
    """The run's bronze and split plus the kept days' published rows. A kept line that the
    files still carry (one without a usable timestamp takes the day of the lines around it, so
    it can move to a covered day) is not kept twice; the kept days' quality report is
    recomputed from what is kept. `elsewhere`: the run's lines outside `bronze` that may be such
    a line (when `bronze` is one month of the run)."""
    if not kept.days:
        return bronze, split
    old = _like(kept.tables["bronze"], bronze)  # the new lines' dtypes: equal values hash equal
    values = [c for c in (*CANONICAL["transactions"], UNPARSED) if c in bronze]
    carried = set(_row_keys(bronze, values))
    if elsewhere is not None and len(elsewhere):
        carried |= set(_row_keys(_like(elsewhere, bronze), values))
    again = _row_keys(old, values).isin(carried).to_numpy()
    lineage = [*LINEAGE, PARTITION_COLUMN]
    moved = set(_row_keys(old[again], lineage))

    def joined(new: pd.DataFrame, key: str) -> pd.DataFrame:
        rows = kept.tables.get(key)
        if rows is None or rows.empty:
            return new
        rows = rows[~_row_keys(rows, lineage).isin(moved).to_numpy()]
        return pd.concat([new, _like(rows, new)], ignore_index=True)

    old = old[~again]
    quarantined = kept.tables.get("quarantined")
    reasons = pd.Series(None, index=old.index, dtype=object)
    if quarantined is not None and len(quarantined):
        by_key = dict(zip(_row_keys(quarantined, lineage), quarantined["reason"], strict=True))
        reasons = _row_keys(old, lineage).map(by_key).astype(object).set_axis(old.index)
    # a kept day's report counts its kept lines and the run's new lines of that day (all
    # quarantined: a day with a new silver line is not kept)
    fresh = split.quarantined[split.quarantined[PARTITION_COLUMN].isin(kept.days)]
    if len(fresh):
        reasons = pd.concat([reasons, fresh["reason"].astype(object)], ignore_index=True)
        old = pd.concat([old, _like(fresh, old)], ignore_index=True)
    report = quality_report(old, reasons) if len(old) else split.report.iloc[:0]
    merged = Split(joined(split.silver, "silver"), joined(split.quarantined, "quarantined"), split.report)
    rest = split.report[~split.report[PARTITION_COLUMN].isin(kept.days)]
    both = pd.concat([rest, _like(report, split.report)], ignore_index=True)
    merged.report = both.sort_values(PARTITION_COLUMN, ignore_index=True)
    merged_bronze = joined(bronze, "bronze")
    kept.lines = len(merged_bronze) - len(bronze)
    return merged_bronze, merged


def first_line_days(database: str | Path, order_ids: pd.Series, before: pd.Timestamp) -> pd.DataFrame:
    """The lines published in silver or quarantine before `before` for the run's order ids:
    REPLAY_KEY and first_day (empty when nothing is published yet)."""
    empty = pd.DataFrame({"first_day": pd.Series(dtype="datetime64[ns]")})
    if not Path(database).exists():
        return empty
    ids = pd.DataFrame({"order_id": pd.Series(order_ids.dropna().unique(), dtype=object)})
    parts = []
    with connect(database, [TABLES["silver"], TABLES["quarantined"]]) as con:
        con.register("run_ids", ids)
        for table in (TABLES["silver"], TABLES["quarantined"]):
            found = _read(
                con,
                table,
                f"{PARTITION_COLUMN} < ? and order_id in (select order_id from run_ids)",
                [before.to_pydatetime()],
                ", ".join([*REPLAY_KEY, PARTITION_COLUMN]),
            )
            if found is not None and len(found):
                parts.append(found[[*REPLAY_KEY, PARTITION_COLUMN]])
    if not parts:
        return empty
    both = pd.concat(parts, ignore_index=True)
    return both[REPLAY_KEY].assign(first_day=both[PARTITION_COLUMN].astype("datetime64[ns]"))


def published_sales(database: str | Path, customers: pd.Series, since: pd.Timestamp, before: pd.Timestamp):
    """customer_id, product_id, order_ts of the silver sales (quantity > 0) published in
    [since, before) for the given customers (None when nothing is published)."""
    if not Path(database).exists():
        return None
    ids = pd.DataFrame({"customer_id": pd.Series(customers.dropna().unique(), dtype=object)})
    with connect(database, [TABLES["silver"]]) as con:
        con.register("run_customers", ids)
        return _read(
            con,
            TABLES["silver"],
            f"quantity > 0 and {PARTITION_COLUMN} >= ? and {PARTITION_COLUMN} < ? "
            "and customer_id in (select customer_id from run_customers)",
            [since.to_pydatetime(), before.to_pydatetime()],
            "customer_id, product_id, order_ts",
        )


def day_counts(database: str | Path, since: pd.Timestamp, before: pd.Timestamp) -> pd.Series:
    """Day -> bronze lines published in [since, before), from the data quality report."""
    if not Path(database).exists():
        return pd.Series(dtype="int64")
    with connect(database, [TABLES["report"]]) as con:
        found = _days(con, TABLES["report"], since, before)
    if found is None or found.empty:
        return pd.Series(dtype="int64")
    return found.set_index(pd.DatetimeIndex(found[PARTITION_COLUMN]))["bronze_rows"].astype("int64")


# what identifies a table's content for a partial publication: lines by their lineage, the
# quality report by its per-day counts
CONTENT_KEYS = {
    "bronze.bronze_transactions": [*LINEAGE, PARTITION_COLUMN],
    "silver.silver_transactions": [*LINEAGE, PARTITION_COLUMN],
    "silver.quarantined_transactions": [*LINEAGE, PARTITION_COLUMN],
    "quality.data_quality_report": [PARTITION_COLUMN, "bronze_rows", "silver_rows", "quarantined_rows"],
}


def _content(frame: pd.DataFrame, cols: list[str]) -> set[tuple]:
    keys = frame[cols].copy()
    keys[PARTITION_COLUMN] = pd.to_datetime(keys[PARTITION_COLUMN]).dt.strftime("%Y-%m-%d")
    for c in cols:
        if c != PARTITION_COLUMN:
            keys[c] = keys[c].astype(str)
    return set(keys.itertuples(index=False, name=None))


def stale_tables(
    database: str | Path, fresh: dict[str, pd.DataFrame], since: pd.Timestamp, before: pd.Timestamp
) -> list[str]:
    """The tables (schema.table -> this run's frame) whose published rows over [since, before)
    differ from this run's, or that were never published: a run that publishes only some
    layers may do so only when the others, left out, already hold what it found. Empty when
    every one matches."""
    if not Path(database).exists():
        return list(fresh)
    changed = []
    with connect(database, fresh) as con:
        for table, frame in fresh.items():
            published = _days(con, table, since, before)
            cols = CONTENT_KEYS[table]
            if published is None or _content(published, cols) != _content(frame, cols):
                changed.append(table)
    return changed
