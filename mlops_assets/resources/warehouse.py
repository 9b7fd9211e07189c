"""The DuckDB warehouse: Dagster's own DuckDBPandasIOManager, one schema per asset group."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import pyarrow as pa
from dagster_duckdb.io_manager import DuckDbClient
from dagster_duckdb_pandas import DuckDBPandasIOManager, DuckDBPandasTypeHandler

from mlops_assets.core.schemas import TEXT


class _EmptyTablePandasTypeHandler(DuckDBPandasTypeHandler):
    """The stock handler's write, plus: creates the table even for an empty frame (the stock one
    skips it), so a clean source still leaves a queryable, empty quarantine table; keeps
    all-null text columns VARCHAR; and leaves out the stock `dataframe_columns` metadata, which
    repeats the assets' own `dagster/column_schema` in each of a range run's hundreds of
    per-partition materialization events. (`table_slice` is the IO manager's TableSlice: the
    schema, table and partition the output maps to.)"""

    def handle_output(self, context, table_slice, obj: pd.DataFrame, connection):
        # an all-null text column would otherwise be typed "NULL" and refuse later text
        blank = [c for c in obj.columns if obj[c].dtype == object and obj[c].isna().all()]
        obj = obj.astype({c: TEXT for c in blank}) if blank else obj
        table = f"{table_slice.schema}.{table_slice.table}"
        if len(obj.columns):
            connection.execute(f"create table if not exists {table} as select * from obj")
            if not connection.fetchall():  # the table existed: the IO manager cleared the slice
                _add_new_columns(connection, table, obj)
                connection.execute(f"insert into {table} by name select * from obj")
        context.add_output_metadata({**_row_counts(context, len(obj)), "dagster/storage_kind": "duckdb"})

    def load_input(self, context, table_slice, connection) -> pd.DataFrame:
        """Text comes back arrow-backed, as bronze wrote it (fetchdf would make Python objects)."""
        if table_slice.partition_dimensions and len(context.asset_partition_keys) == 0:
            return pd.DataFrame()
        table = connection.sql(DuckDbClient.get_select_statement(table_slice)).to_arrow_table()
        return table.to_pandas(types_mapper={pa.string(): TEXT, pa.large_string(): TEXT}.get)


def _add_new_columns(connection, table: str, obj: pd.DataFrame) -> None:
    """Columns the frame has and the table lacks are added, null
    in the rows already published: a release that adds a column keeps the published tables."""
    have = {row[0] for row in connection.execute(f"describe {table}").fetchall()}
    for name, kind, *_ in connection.execute("describe select * from obj").fetchall():
        if name not in have:
            connection.execute(f'alter table {table} add column "{name}" {kind}')


def _row_counts(context, rows: int) -> dict:
    """Dagster copies one output's metadata onto the event of every partition the run wrote: a
    run over one partition gets its `dagster/partition_row_count`; a range run reports its rows
    as the range's (`rows_in_run`), never as each partition's."""
    if not context.has_asset_partitions:
        return {"dagster/row_count": rows}
    keys = context.asset_partition_keys
    if len(keys) == 1:
        return {"dagster/partition_row_count": rows}
    return {"rows_in_run": rows, "partitions_in_run": len(keys), "run_range": f"{keys[0]}...{keys[-1]}"}


# Row order in a table carries no meaning here (readers sort or filter by partition), and
# letting DuckDB drop it makes writing a million-line partition range about 1.7x faster.
WRITE_CONFIG = {"preserve_insertion_order": False}


class WarehouseIOManager(DuckDBPandasIOManager):
    """warehouse.duckdb in the data directory; tables land in the schema named by the asset's
    `schema` metadata (its group)."""

    connection_config: dict = WRITE_CONFIG

    @staticmethod
    def type_handlers() -> Sequence[DuckDBPandasTypeHandler]:
        return [_EmptyTablePandasTypeHandler()]
