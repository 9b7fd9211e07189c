"""The DuckDB warehouse: Dagster's own DuckDBPandasIOManager, one schema per asset group."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import pyarrow as pa
from dagster._core.storage.db_io_manager import DbTypeHandler, TableSlice
from dagster_duckdb.io_manager import DuckDbClient
from dagster_duckdb_pandas import DuckDBPandasIOManager, DuckDBPandasTypeHandler

from mlops_assets.core.schemas import TEXT


class _EmptyTablePandasTypeHandler(DuckDBPandasTypeHandler):
    """The stock handler, plus: creates the table even for an empty frame (the stock one skips
    it), so a clean source still leaves a queryable, empty quarantine table; and keeps
    all-null text columns VARCHAR."""

    def handle_output(self, context, table_slice: TableSlice, obj: pd.DataFrame, connection):
        # an all-null text column would otherwise be typed "NULL" and refuse later text
        blank = [c for c in obj.columns if obj[c].dtype == object and obj[c].isna().all()]
        obj = obj.astype({c: TEXT for c in blank}) if blank else obj
        if obj.empty and len(obj.columns):
            connection.execute(
                f"create table if not exists {table_slice.schema}.{table_slice.table} as select * from obj"
            )
        super().handle_output(context, table_slice, obj, connection)

    def load_input(self, context, table_slice: TableSlice, connection) -> pd.DataFrame:
        """Text comes back arrow-backed, as bronze wrote it (fetchdf would make Python objects)."""
        if table_slice.partition_dimensions and len(context.asset_partition_keys) == 0:
            return pd.DataFrame()
        table = connection.sql(DuckDbClient.get_select_statement(table_slice)).to_arrow_table()
        return table.to_pandas(types_mapper={pa.string(): TEXT, pa.large_string(): TEXT}.get)


class WarehouseIOManager(DuckDBPandasIOManager):
    """warehouse.duckdb in the data directory; tables land in the schema named by the asset's
    `schema` metadata (its group)."""

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [_EmptyTablePandasTypeHandler()]
