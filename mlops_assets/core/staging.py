"""A run's order lines out of memory: read one file at a time, typed, each line given its
partition day, and staged as Parquet per month in a scratch folder beside the warehouse.

Ingestion then routes a month at a time (assets/transactions.py). What a month's rules need from
the rest of the run (the first day of an order's line, the sales before a return, the reference
price of a product) is queried from the staged files by DuckDB, which streams them. No step
holds more than one file's or one month's lines in pandas; what comes back from a query has a
row per product, or only the lines of the month's own orders and customers.

A month's files are registered in the order of the run's files, each in its lines' order, so
that a month read back is in the order the whole run was in, and rules that keep the first of
equal lines (duplicate_line) give the answer they gave over the whole run.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlops_assets.core import quality, warehouse
from mlops_assets.core.schemas import PARTITION_COLUMN, TEXT

TABLES = ("bronze", "silver", "quarantined", "report")
MEMORY_LIMIT = warehouse.MEMORY_LIMIT  # the staging queries' DuckDB spills to the stage past this


def month_of(day: pd.Timestamp) -> pd.Timestamp:
    return pd.Timestamp(day).to_period("M").to_timestamp()


def months_between(start: pd.Timestamp, end: pd.Timestamp) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """[start, end) cut at month boundaries: (first day, day after the last) per month."""
    out = []
    at = pd.Timestamp(start)
    while at < end:
        nxt = min(month_of(at) + pd.offsets.MonthBegin(1), pd.Timestamp(end))
        out.append((at, nxt))
        at = nxt
    return out


def arrow_of(frame: pd.DataFrame) -> pa.Table:
    """A frame as Parquet keeps it; all-null object columns as text, not a null type."""
    blank = [c for c in frame.columns if frame[c].dtype == object and frame[c].isna().all()]
    if blank:
        frame = frame.astype({c: TEXT for c in blank})
    return pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(frame_metadata(frame))


class MonthFiles:
    """A file's typed lines, written as they come (a piece at a time) into one Parquet file per
    month of their partition day, in their order."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.writers: dict[pd.Period, pq.ParquetWriter] = {}
        self.lines: dict[pd.Period, int] = {}

    def write(self, typed: pd.DataFrame) -> None:
        """Append the lines to their months' files. The piece goes to Arrow once and is cut
        into months by slices (a feed is mostly in time order; else one stable sort first):
        pandas' groupby took every Arrow text column row by row, a third of staging's time at
        20M lines. Lines without a partition day are not written (as groupby drops them)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        stamps = typed[PARTITION_COLUMN].to_numpy(dtype="datetime64[ns]").astype("datetime64[M]")
        rows = np.flatnonzero(~np.isnat(stamps))
        if not len(rows):
            return
        table, months = arrow_of(typed), stamps[rows]
        if len(rows) < len(typed) or (months[1:] < months[:-1]).any():
            order = np.argsort(months, kind="stable")
            table, months = table.take(rows[order]), months[order]
        cuts = [0, *(np.flatnonzero(months[1:] != months[:-1]) + 1), len(months)]
        for low, high in itertools.pairwise(cuts):
            month, part = pd.Period(months[low], "M"), table.slice(low, high - low)
            writer = self.writers.get(month)
            if writer is None:
                writer = self.writers[month] = pq.ParquetWriter(self.folder / f"{month}.parquet", part.schema)
            writer.write_table(part.cast(writer.schema))
            self.lines[month] = self.lines.get(month, 0) + part.num_rows

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers = {}


def frame_metadata(frame: pd.DataFrame) -> dict:
    # pandas' own metadata restores arrow-backed text and datetime64[ns] on the way back
    return pa.Table.from_pandas(frame.head(0), preserve_index=False).schema.metadata or {}


@dataclass
class Stage:
    """The scratch folder of one run; `close()` removes it."""

    root: Path
    schema: pa.Schema | None = None  # of the bronze lines (an empty month reads back with it)
    lines: dict[pd.Timestamp, int] = field(default_factory=dict)  # month -> lines staged
    _written: dict[tuple[str, pd.Timestamp], list[Path]] = field(default_factory=dict)

    @classmethod
    def beside(cls, data_dir: Path) -> Stage:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        return cls(Path(tempfile.mkdtemp(prefix=".ingest-", dir=data_dir)))

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # -- writing -----------------------------------------------------------------------------

    def add_lines(self, month: pd.Timestamp, path: Path, lines: int) -> None:
        """Register a Parquet file of a month's lines (staged here or kept in the cache of files
        already read), in the run's file order: a month reads back in the order of the run."""
        self._written.setdefault(("lines", month), []).append(path)
        self.lines[month] = self.lines.get(month, 0) + lines

    def write(self, table: str, month: pd.Timestamp, frame: pd.DataFrame, name: str = "part") -> Path:
        path = self.path(table, month, name)
        pq.write_table(arrow_of(frame), path, compression="lz4")  # read once, then deleted: fast over small
        return self.register(table, month, path)

    def path(self, table: str, month: pd.Timestamp, name: str = "part") -> Path:
        """Where a month's file of `table` goes (written by the caller, then `register`ed)."""
        folder = self.root / table / f"{month:%Y-%m}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{name}.parquet"

    def register(self, table: str, month: pd.Timestamp, path: Path) -> Path:
        self._written.setdefault((table, month), []).append(path)
        return path

    # -- reading -----------------------------------------------------------------------------

    def files(self, table: str, month: pd.Timestamp | None = None) -> list[Path]:
        return [
            p for (t, m), ps in sorted(self._written.items()) if t == table and month in (None, m) for p in ps
        ]

    def read(self, table: str, month: pd.Timestamp) -> pd.DataFrame | None:
        files = self.files(table, month)
        if not files:
            return None
        return warehouse.to_pandas(
            pa.concat_tables([pq.read_table(p) for p in files], promote_options="default")
        )

    def month_lines(self, month: pd.Timestamp) -> pd.DataFrame:
        """The month's staged lines, in the run's order (empty, typed, when it has none)."""
        frame = self.read("lines", month)
        if frame is None:
            frame = warehouse.to_pandas((self.schema or pa.schema([])).empty_table())
        frame.index = pd.RangeIndex(len(frame))
        return frame

    def head(self, table: str, rows: int = 100) -> pd.DataFrame:
        """The first `rows` rows of the first month of `table` that has any (for previews)."""
        for path in self.files(table):
            parquet = pq.ParquetFile(path)
            if parquet.metadata.num_rows:
                batch = next(parquet.iter_batches(batch_size=rows))
                return warehouse.to_pandas(pa.Table.from_batches([batch]))
        return (
            warehouse.to_pandas((self.schema or pa.schema([])).empty_table())
            if table == "lines"
            else pd.DataFrame()
        )

    def row_counts(self, table: str) -> pd.Series:
        """Rows of `table` per month ('YYYY-MM'), from the files' footers."""
        counts: dict[str, int] = {}
        for (t, month), paths in sorted(self._written.items()):
            if t == table:
                rows = sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
                counts[f"{month:%Y-%m}"] = counts.get(f"{month:%Y-%m}", 0) + rows
        return pd.Series(counts, dtype="int64")

    def frames(self, table: str) -> Iterator[tuple[pd.Timestamp, pd.DataFrame]]:
        for (t, month), _ in sorted(self._written.items()):
            if t == table:
                yield month, self.read(table, month)

    def query(self, sql: str, params: list | None = None, **frames) -> pd.DataFrame:
        """A DuckDB query over the staged lines (`lines`: every staged month) and the given
        frames (registered by name)."""
        import duckdb

        files = [str(p) for p in self.files("lines")]
        with duckdb.connect() as con:
            con.execute(f"set memory_limit = '{MEMORY_LIMIT}'")
            con.execute(f"set temp_directory = '{self.root / 'spill'}'")
            for name, frame in frames.items():
                con.register(name, frame)
            if files:
                con.execute(
                    f"create view lines as select * from read_parquet({files!r}, union_by_name = true)"
                )
            else:
                con.execute("create view lines as select * from (select 1) where false")
            return warehouse.to_pandas(con.sql(sql, params=params or None).to_arrow_table())

    # -- what a month needs from the rest of the run --------------------------------------------

    def reference_prices(self) -> pd.Series:
        """Per product, the median positive unit price over every staged line of the run (the
        mean of the two middle prices for an even count, as pandas' median), from the count of
        lines at each price."""
        from mlops_assets.core.product_features import median_of_counts

        if not self.files("lines"):
            return pd.Series(dtype=float)
        counts = self.query(
            "select product_id, unit_price, count(*) as n from lines "
            "where unit_price > 0 and product_id is not null group by all"
        )
        return median_of_counts(counts, "product_id", "unit_price")

    def unplaced_lines(self, window: quality.Window) -> pd.DataFrame:
        """The run's lines whose timestamp is missing or outside the window: they take the day
        of the lines around them, so they are the only ones that can move between months."""
        return self.query(
            "select * from lines where order_ts is null or order_ts < ? or order_ts >= ?",
            [window.start.to_pydatetime(), window.end.to_pydatetime()],
        )
