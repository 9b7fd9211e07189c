"""Reading the warehouse, whichever format holds it.

The warehouse is a DuckDB file (`warehouse.duckdb`, the default: one writer at a time, so nothing
else can open it while a run writes) or a folder of Delta tables (`warehouse/<schema>/<table>`,
the production profile's: each commit is atomic and readers see the last committed version, so
dashboards and queries run while runs write). Code that reads it directly (publication,
snapshots, the feature store, tests, SQL users) goes through `connect`, which gives a read-only
DuckDB connection where every table is `<schema>.<table>` in both formats: over a Delta folder
it is an in-memory DuckDB whose views read each table's current version (deltalake's Arrow
dataset, filters pushed down).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa

from mlops_assets.core.schemas import TEXT

FORMATS = ("duckdb", "delta")
TEXT_TYPES = {pa.string(): TEXT, pa.large_string(): TEXT}


def location(data_dir: Path, fmt: str) -> Path:
    """Where a data directory's warehouse of format `fmt` lives."""
    if fmt not in FORMATS:
        raise ValueError(f"warehouse: {fmt!r} is not a warehouse format ({', '.join(FORMATS)})")
    return data_dir / ("warehouse.duckdb" if fmt == "duckdb" else "warehouse")


def is_delta(database: str | Path) -> bool:
    return Path(database).is_dir()


def delta_tables(root: str | Path) -> dict[str, Path]:
    """schema.table -> folder, for every Delta table under `root`."""
    found = {}
    for log in sorted(Path(root).glob("*/*/_delta_log")):
        folder = log.parent
        found[f"{folder.parent.name}.{folder.name}"] = folder
    return found


@contextmanager
def connect(database: str | Path, tables: Iterable[str] | None = None) -> Iterator:
    """A read-only DuckDB connection on the warehouse at `database` (a .duckdb file or a Delta
    folder). Over Delta, `tables` (schema.table names) limits which tables are opened (each
    costs a read of its log); the others are absent."""
    import duckdb

    if not is_delta(database):
        with duckdb.connect(str(database), read_only=True) as con:
            yield con
        return
    from deltalake import DeltaTable

    wanted = None if tables is None else set(tables)
    with duckdb.connect() as con:
        for name, folder in delta_tables(database).items():
            if wanted is not None and name not in wanted:
                continue
            schema, table = name.split(".")
            con.execute(f'create schema if not exists "{schema}"')
            con.register(f"__delta__{schema}__{table}", DeltaTable(str(folder)).to_pyarrow_dataset())
            con.execute(f'create view "{schema}"."{table}" as select * from "__delta__{schema}__{table}"')
        yield con


def table_exists(con, table: str) -> bool:
    """Whether the warehouse connection `con` has `table` (schema.name)."""
    schema, name = table.split(".")
    sql = "select count(*) from information_schema.tables where table_schema = ? and table_name = ?"
    return bool(con.execute(sql, [schema, name]).fetchall()[0][0])


def read_table(database: str | Path, table: str, sql: str = "select * from {table}") -> pd.DataFrame | None:
    """The whole table (text arrow-backed, as the IO manager loads it), or what `sql` (with
    `{table}` in it) selects from it; None when the table is absent."""
    with connect(database, [table]) as con:
        if not table_exists(con, table):
            return None
        arrow = con.sql(sql.format(table=table)).to_arrow_table()
    return to_pandas(arrow)


def to_pandas(arrow: pa.Table) -> pd.DataFrame:
    """Arrow to pandas as the warehouse hands frames out in both formats: text arrow-backed,
    timestamps in nanoseconds (Delta stores microseconds)."""
    return arrow.to_pandas(types_mapper=TEXT_TYPES.get, coerce_temporal_nanoseconds=True)


def stamp(database: str | Path, tables: Iterable[str]) -> int:
    """Changes whenever a run writes one of `tables` (schema.table; for caches over them): the
    DuckDB file's mtime, or the newest of the tables' `_delta_log` folders' mtimes (a commit adds
    a file there). A stat per table: cheap enough for a per-request check."""
    path = Path(database)
    if not is_delta(path):
        return path.stat().st_mtime_ns
    logs = (path.joinpath(*name.split("."), "_delta_log") for name in tables)
    return max((log.stat().st_mtime_ns for log in logs if log.is_dir()), default=0)
