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
from contextlib import contextmanager, suppress
from pathlib import Path

import pandas as pd
import pyarrow as pa

from mlops_assets.core.schemas import TEXT

FORMATS = ("duckdb", "delta")
TEXT_TYPES = {pa.string(): TEXT, pa.large_string(): TEXT}


# DuckDB keeps at most this much in memory per connection and spills the rest to disk (beside
# the file); without it a connection may take 80% of the machine's memory: the transaction
# that writes a chain's snapshots (60M rows at 20M lines) peaked at 4.4 GB, 2.1 GB with it
MEMORY_LIMIT = "2GB"
LIMITS = {"memory_limit": MEMORY_LIMIT}


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
        with duckdb.connect(str(database), read_only=True, config=LIMITS) as con:
            yield con
        return
    with duckdb.connect(config=LIMITS) as con:
        register_delta(con, database, tables)
        yield con


def register_delta(con, root: str | Path, tables: Iterable[str] | None = None) -> None:
    """Views `<schema>.<table>` on DuckDB connection `con` over the Delta tables under `root`
    (each table's current version, filters pushed down); `tables` limits which are opened."""
    from deltalake import DeltaTable

    wanted = None if tables is None else set(tables)
    for name, folder in delta_tables(root).items():
        if wanted is not None and name not in wanted:
            continue
        schema, table = name.split(".")
        con.execute(f'create schema if not exists "{schema}"')
        con.register(f"__delta__{schema}__{table}", DeltaTable(str(folder)).to_pyarrow_dataset())
        con.execute(f'create view "{schema}"."{table}" as select * from "__delta__{schema}__{table}"')


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


def replace_rows(
    database: str | Path, table: str, staged: list[Path], column: str, replace: list, keep: list
) -> None:
    """Write a table that a step computed out of memory (staged Parquet files), one
    transaction: drop the rows whose `column` is in `replace` or not in `keep`, append the
    staged rows (new columns are added, null in the rows kept). The table is created from the
    staged files when absent. `database`: the DuckDB file or the Delta folder."""
    values = sorted({pd.Timestamp(v) for v in replace})
    wanted = sorted({pd.Timestamp(v) for v in keep})
    if is_delta(database):
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        def listed(stamps: list) -> str:
            return ", ".join(f"'{s:%Y-%m-%d %H:%M:%S}'" for s in stamps) or "NULL"

        uri = Path(database).joinpath(*table.split("."))
        if wanted:
            with suppress(TableNotFoundError):
                DeltaTable(str(uri)).delete(f"{column} not in ({listed(wanted)})")
        _write_delta(uri, staged, f"{column} in ({listed(values)})")
        return
    where = f"{column} in (select unnest(?::timestamp[])) or {column} not in (select unnest(?::timestamp[]))"
    _write_duckdb(database, table, staged, where, [values, wanted])


def replace_range(
    database: str | Path, table: str, staged: list[Path], column: str, start: pd.Timestamp, end: pd.Timestamp
) -> None:
    """Write a partition range that a step staged out of memory: the rows whose `column` lies in
    [start, end) are replaced by the staged rows in one transaction (new columns are added, null
    in the rows kept), as the IO managers write a range run. The table is created from the
    staged files when absent. `database`: the DuckDB file or the Delta folder."""
    low, high = pd.Timestamp(start).to_pydatetime(), pd.Timestamp(end).to_pydatetime()
    if is_delta(database):
        stamp = "%Y-%m-%d %H:%M:%S"
        predicate = f"{column} >= '{low:{stamp}}' AND {column} < '{high:{stamp}}'"
        _write_delta(Path(database).joinpath(*table.split(".")), staged, predicate)
        return
    _write_duckdb(database, table, staged, f"{column} >= ? and {column} < ?", [low, high])


def _write_duckdb(database: str | Path, table: str, staged: list[Path], where: str, params: list) -> None:
    import duckdb

    files = [str(p) for p in staged]
    with duckdb.connect(str(database), config={"preserve_insertion_order": False, **LIMITS}) as con:
        con.execute("begin")
        schema, _ = table.split(".")
        con.execute(f'create schema if not exists "{schema}"')
        if files:
            con.execute(
                f"create table if not exists {table} as select * from read_parquet(?) limit 0", [files]
            )
            have = {row[0] for row in con.execute(f"describe {table}").fetchall()}
            new = con.execute(
                "describe select * from read_parquet(?, union_by_name = true)", [files]
            ).fetchall()
            for name, kind, *_ in new:
                if name not in have:
                    con.execute(f'alter table {table} add column "{name}" {kind}')
        if table_exists(con, table):
            con.execute(f"delete from {table} where {where}", params)
        if files:
            con.execute(
                f"insert into {table} by name select * from read_parquet(?, union_by_name = true)", [files]
            )
        con.execute("commit")


def _write_delta(uri: Path, staged: list[Path], predicate: str) -> None:
    """Replace the rows `predicate` selects by the staged rows, in one commit."""
    import pyarrow.dataset as ds
    from deltalake import DeltaTable, write_deltalake
    from deltalake.exceptions import TableNotFoundError

    try:
        current = DeltaTable(str(uri))
    except TableNotFoundError:
        current = None
    files = [str(p) for p in staged]
    if not files:
        if current is not None:
            current.delete(predicate)
        return
    if current is None:
        write_deltalake(str(uri), ds.dataset(files, format="parquet").scanner().to_reader(), mode="overwrite")
        return
    # read the staged rows as the table's types (as DuckDB's insert casts), batch by batch
    have = pa.schema(current.schema().to_arrow())
    fields = ds.dataset(files, format="parquet").schema
    target = pa.schema([have.field(f.name) if f.name in have.names else f for f in fields])
    rows = ds.dataset(files, format="parquet", schema=target).scanner().to_reader()
    write_deltalake(str(uri), rows, mode="overwrite", schema_mode="merge", predicate=predicate)


def cast_like(data: pa.Table, have: pa.Schema, uri: str) -> pa.Table:
    """The frame's columns that the table already has, cast to the table's types."""
    for i, field in enumerate(data.schema):
        if field.name not in have.names:
            continue
        want = have.field(field.name).type
        if field.type == want or (pa.types.is_string(want) and pa.types.is_large_string(field.type)):
            continue
        try:
            data = data.set_column(i, field.name, data.column(i).cast(want))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise TypeError(f"{uri}: column {field.name} is {want} in the table; this output's {field.type} "
                            f"values do not convert ({exc})") from exc  # fmt: skip
    return data
