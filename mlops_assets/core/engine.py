"""The engine that line-level work runs on.

The order log grows without bound; customers, products and series grow slowly. Work over
order lines is written once as Ibis expressions (`ibis.Table` in, a table with a row per
customer, product, day or series out) and executed here by DuckDB, out of core: it streams
the warehouse's tables, spills to disk past `memory_limit`, and hands pandas only the small
result. The same expressions run on another Ibis backend (PySpark) unchanged.

    with engine.connect(settings.warehouse_path) as con:
        lines = engine.silver_or_empty(con)
        summary = clv.rfm_summary(lines, as_of)     # a row per customer comes back
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import ibis
import ibis.expr.datatypes as dt
import pandas as pd

from mlops_assets.core import schemas, warehouse

SILVER = "silver.silver_transactions"
# DuckDB keeps at most this much in memory per query and spills the rest to its temp folder
# (`<warehouse>.tmp` beside the file): a chain's log then fits any machine with a few GB
MEMORY_LIMIT = warehouse.MEMORY_LIMIT
# sums of money (and quantities) are exact: each value as a decimal of 18 places (1e-20 of a
# cent-valued float), added without rounding, so a total does not depend on the order the
# engine meets the lines in (a float sum does, in its last bits, and the forecasters'
# optimizers magnify that to 1e-7 relative); totals up to 1e20
EXACT = dt.Decimal(38, 18)


@contextmanager
def connect(
    database: str | Path, tables: Iterable[str] | None = None, memory_limit: str = MEMORY_LIMIT
) -> Iterator[ibis.BaseBackend]:
    """An Ibis backend (DuckDB) that reads the warehouse at `database` (a .duckdb file, attached
    read-only, or a Delta folder: `tables` limits which of its tables are opened) as
    `<schema>.<table>` views, and keeps what a step stages (`create_table`) in a scratch database
    of its own beside the warehouse, deleted at the end with its spill files. Close it before
    the step writes the warehouse: DuckDB allows one writer per file."""
    import duckdb

    scratch = Path(tempfile.mkdtemp(prefix=".engine-", dir=Path(database).parent))
    con = duckdb.connect(str(scratch / "scratch.duckdb"))
    try:
        con.execute(f"set memory_limit = '{memory_limit}'")
        con.execute(f"set temp_directory = '{scratch / 'spill'}'")
        if warehouse.is_delta(database):
            warehouse.register_delta(con, database, tables)
        elif Path(database).exists():
            con.execute(f"attach '{database}' as warehouse (read_only)")
            listed = con.execute(
                "select schema_name, table_name from duckdb_tables() where database_name = 'warehouse'"
            ).fetchall()
            for schema, name in listed:
                con.execute(f'create schema if not exists "{schema}"')
                con.execute(f'create view "{schema}"."{name}" as select * from warehouse."{schema}"."{name}"')
        yield ibis.duckdb.from_connection(con)
    finally:
        con.close()
        shutil.rmtree(scratch, ignore_errors=True)


@contextmanager
def memory_backend(spill: str | Path | None = None) -> Iterator[ibis.BaseBackend]:
    """An in-process DuckDB backend of its own, memory-limited, that spills to `spill` (a folder;
    by default a temporary one): for expressions over Parquet files or frames (memtables)."""
    import duckdb

    folder = Path(spill) if spill else Path(tempfile.mkdtemp(prefix="mlops-engine-"))
    con = duckdb.connect(config={**warehouse.LIMITS, "temp_directory": str(folder)})
    try:
        yield ibis.duckdb.from_connection(con)
    finally:
        con.close()
        if spill is None:
            shutil.rmtree(folder, ignore_errors=True)


def exact_sum(column: ibis.Column, where: ibis.BooleanValue | None = None) -> ibis.Scalar:
    """The exact (decimal) sum of a numeric column; cast it to float64 where it leaves the engine."""
    return column.cast(EXACT).sum(where=where)


NANO = 10**9  # money and quantities in billionths, as int64: exact running totals to 9.2e9 each


def nano_sum(column: ibis.Column, where: ibis.BooleanValue | None = None) -> ibis.Scalar:
    """The sum in billionths of a unit, as an integer (null over no rows): each value rounded
    to a billionth, then added as integers. Running totals of such integers are exact, so any
    order of adding them gives the same total. (Rounding each line, not the decimal sum, differs
    by at most a billionth per line, far below a currency's cent, and runs about 2.5 times as
    fast as a DECIMAL(38, 18) sum: on 20M lines the customer-day table took 5 s instead of 13.)"""
    return (column * NANO).round().cast("int64").sum(where=where)


def exact_float_sum(column: ibis.Column, where: ibis.BooleanValue | None = None) -> ibis.Scalar:
    """The exact sum, rounded once to the nearest float64."""
    return exact_sum(column, where).cast("float64")


def table(con: ibis.BaseBackend, name: str) -> ibis.Table | None:
    """The warehouse table `schema.table`, or None when it is absent."""
    if not warehouse.table_exists(con.con, name):
        return None
    schema, table_name = name.split(".")
    return con.table(table_name, database=schema)


def silver(con: ibis.BaseBackend) -> ibis.Table | None:
    """The published silver order lines, or None before any were published."""
    return table(con, SILVER)


def silver_or_empty(con: ibis.BaseBackend) -> ibis.Table:
    """The published silver lines, or an empty table of their columns before any were published."""
    lines = silver(con)
    if lines is not None:
        return lines
    empty = schemas.empty_frame("transactions")
    return frame_lines(empty.assign(**{schemas.PARTITION_COLUMN: empty["order_ts"]}))


def to_frame(expr: ibis.Table) -> pd.DataFrame:
    """A (small) result as pandas, typed as the warehouse hands frames out: text arrow-backed,
    timestamps in nanoseconds."""
    return warehouse.to_pandas(expr.to_pyarrow())


def as_table(lines: pd.DataFrame | ibis.Table) -> ibis.Table:
    """Lines as an Ibis table: a table as it is, a frame on the in-process DuckDB backend."""
    return lines if isinstance(lines, ibis.Table) else frame_lines(lines)


def frame_lines(frame: pd.DataFrame) -> ibis.Table:
    """Lines held in a pandas frame (tests, small inputs) as an Ibis table on the default
    in-process DuckDB backend, so the same expressions run on them."""
    return ibis.memtable(frame)
