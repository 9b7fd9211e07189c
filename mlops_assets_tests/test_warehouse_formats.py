"""The two warehouse formats (issue 18): DuckDB (the default) and Delta tables (the production
profile's) publish the same tables with the same partition semantics, and Delta can be read
while it is written."""

from __future__ import annotations

import threading

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from mlops_assets.core import warehouse
from mlops_assets.core.schemas import TEXT
from mlops_assets.resources import warehouse_io_manager
from mlops_assets_tests.conftest import SMALL, edit_sources, feature_keys, run_graph

MONTHS = dg.MonthlyPartitionsDefinition(start_date="2023-01-01", end_date="2023-04-01")


def _lines(days: list[str], qty: list, extra: bool = False) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "day": pd.to_datetime(days).astype("datetime64[ns]"),
            "sku": pd.Series([f"p{i}" for i in range(len(days))], dtype=TEXT),
            "qty": qty,
            "note": [None] * len(days),  # all null: must still be text
        }
    )
    return frame.assign(channel=pd.Series(["web"] * len(days), dtype=TEXT)) if extra else frame


@pytest.mark.parametrize("fmt", warehouse.FORMATS)
def test_both_formats_replace_exactly_a_runs_partitions(tmp_path, fmt):
    """A range run writes Jan..Feb; a later run of February alone replaces February's rows only
    (with a column the first run did not have, and integer quantities where the table holds
    floats); an empty frame leaves an empty, queryable table; loads return the window's rows."""
    writes = {}

    @dg.asset(partitions_def=MONTHS, metadata={"partition_expr": "day", "schema": "s"})
    def lines(context) -> pd.DataFrame:
        return writes[tuple(context.partition_keys)]

    @dg.asset(metadata={"schema": "s"})
    def empty() -> pd.DataFrame:
        return pd.DataFrame({"sku": pd.Series([], dtype=TEXT), "qty": pd.Series([], dtype="float64")})

    @dg.asset(partitions_def=MONTHS, metadata={"partition_expr": "day", "schema": "s"})
    def february(lines: pd.DataFrame) -> pd.DataFrame:
        return lines.assign(rows=len(lines))

    database = warehouse.location(tmp_path, fmt)
    resources = {"io_manager": warehouse_io_manager(database, fmt)}
    writes[("2023-01-01", "2023-02-01")] = _lines(["2023-01-05", "2023-01-31", "2023-02-01", "2023-02-20"],
                                                  [1.5, 2.0, 3.0, 4.0])  # fmt: skip
    writes[("2023-02-01",)] = _lines(["2023-02-02", "2023-02-28", "2023-02-28"], [7, 8, 9], extra=True)
    in_range = {"dagster/asset_partition_range_start": "2023-01-01",
                "dagster/asset_partition_range_end": "2023-02-01"}  # fmt: skip
    first = dg.materialize([lines, empty], resources=resources, tags=in_range)
    assert first.success
    assert dg.materialize([lines], resources=resources, partition_key="2023-02-01").success
    loaded = dg.materialize([lines, february], resources=resources, partition_key="2023-02-01",
                            selection=[february.key])  # fmt: skip
    assert loaded.success

    table = warehouse.read_table(database, "s.lines").sort_values(["day", "sku"], ignore_index=True)
    assert table["day"].dt.strftime("%m-%d").tolist() == ["01-05", "01-31", "02-02", "02-28", "02-28"]
    assert table["qty"].tolist() == [1.5, 2.0, 7.0, 8.0, 9.0] and table["qty"].dtype == "float64"
    assert table["channel"].isna().tolist() == [True, True, False, False, False]
    assert table["sku"].dtype == TEXT and table["note"].dtype == TEXT and table["note"].isna().all()
    assert table["day"].dtype == "datetime64[ns]"
    assert warehouse.read_table(database, "s.february")["rows"].unique().tolist() == [3]
    empty_table = warehouse.read_table(database, "s.empty")
    assert empty_table is not None and len(empty_table) == 0 and list(empty_table.columns) == ["sku", "qty"]
    assert warehouse.read_table(database, "s.absent") is None


def test_the_sample_publishes_the_same_tables_in_both_formats(_small_template, tmp_path):
    """Ingestion and features over the small sample, once per format: every table, its rows,
    columns and dtypes, the same."""
    import shutil

    built = {}
    for fmt in warehouse.FORMATS:
        data = tmp_path / fmt
        shutil.copytree(_small_template, data)
        edit_sources(data, lambda s, fmt=fmt: s.update(warehouse=fmt))
        result = run_graph(data, SMALL["start"], SMALL["end"], selection=feature_keys(data))
        assert result.success
        built[fmt] = warehouse.location(data, fmt)
    assert built["delta"].is_dir() and not (tmp_path / "delta" / "warehouse.duckdb").exists()
    with warehouse.connect(built["duckdb"]) as con:
        rows = con.execute("select table_schema, table_name from information_schema.tables").fetchall()
    names = {f"{schema}.{table}" for schema, table in rows}
    assert names == set(warehouse.delta_tables(built["delta"])) and len(names) == 8
    for name in sorted(names):
        duck, delta = (warehouse.read_table(built[f], name) for f in warehouse.FORMATS)
        assert len(duck) > 0 or name == "silver.quarantined_transactions", name
        assert list(duck.columns) == list(delta.columns) and (duck.dtypes == delta.dtypes).all(), name
        keys = [c for c in duck.columns if duck[c].dtype != "float64"]
        duck, delta = (f.sort_values(keys, ignore_index=True) for f in (duck, delta))
        pd.testing.assert_frame_equal(duck, delta, obj=name)


def test_delta_readers_see_whole_commits_while_a_writer_writes(tmp_path):
    """A reader querying through warehouse.connect while another thread rewrites the table
    commit after commit always sees one whole version: a row count one of the writes had."""
    from deltalake import write_deltalake

    root = tmp_path / "warehouse"
    sizes = [1000 + 37 * i for i in range(40)]
    frames = [pd.DataFrame({"x": np.arange(n, dtype="int64")}) for n in sizes]
    write_deltalake(str(root / "s" / "t"), frames[0], mode="overwrite")
    failures: list[BaseException] = []
    before = warehouse.stamp(root, ["s.t"])  # what caches over the table (the online store) check

    def write() -> None:
        try:
            for frame in frames[1:]:
                write_deltalake(str(root / "s" / "t"), frame, mode="overwrite")
        except BaseException as exc:  # surfaced by the assertion below
            failures.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    seen = []
    while writer.is_alive() or not seen:
        with warehouse.connect(root, ["s.t"]) as con:
            seen.append(con.execute("select count(*), max(x) from s.t").fetchone())
    writer.join()
    assert not failures
    assert warehouse.stamp(root, ["s.t"]) > before > 0
    assert all(count in sizes and top == count - 1 for count, top in seen), seen
    assert len({count for count, _ in seen}) > 1  # the reads ran across commits
    with warehouse.connect(root) as con:
        assert con.execute("select count(*) from s.t").fetchone()[0] == sizes[-1]
