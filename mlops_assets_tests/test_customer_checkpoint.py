"""Checkpoints of the customers' running totals: a run resumed from one reduces only the days
since it (and those leaving the 365-day window) and gives the features a computation over the
whole history gives, to the bit; a changed line before it makes the run start over."""

import duckdb
import pandas as pd
import pytest

from mlops_assets.core import customer_checkpoint as cc
from mlops_assets.core import engine
from mlops_assets.core.feature_store import Sources
from mlops_assets.core.line_features import DAY

T0, T1 = pd.Timestamp("2024-03-04"), pd.Timestamp("2024-04-01")


@pytest.fixture(scope="module")
def long_lines(small_lines) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The small sample (early 2023) and a copy 13 months later, where a third of the customers
    are new; plus an order with lines on both sides of T0 and a product bought again after it."""
    tx, catalog, _ = small_lines
    tx = tx.assign(order_ts=tx["order_ts"].astype("datetime64[us]"))
    later = tx.assign(order_ts=tx["order_ts"] + pd.Timedelta(days=396), order_id=tx["order_id"] + "-b")
    renamed = later["customer_id"].str[-1].isin(["1", "4", "7"])
    later.loc[renamed, "customer_id"] = later.loc[renamed, "customer_id"] + "-new"
    a = tx.dropna(subset=["customer_id"]).iloc[0]
    edges = pd.DataFrame([a, a, a]).assign(
        order_id=["SPAN", "SPAN", "AGAIN"],
        order_ts=pd.to_datetime(["2024-03-03 23:00", "2024-03-05 09:00", "2024-03-20 12:00"]).astype(
            "datetime64[us]"
        ),
    )
    return pd.concat([tx, later, edges], ignore_index=True), catalog


def _warehouse(path, lines: pd.DataFrame):
    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(path)) as con:
        con.execute("create schema if not exists silver")
        con.execute("create or replace table silver.silver_transactions as select * from lines")
    return path


def _checkpoint(where, catalog, at: pd.Timestamp) -> cc.Reached:
    """Reach `at` over the warehouse's lines and leave its checkpoint."""
    with engine.connect(where) as con:
        reached = cc.reach(engine.silver_or_empty(con), catalog, at, folder=cc.folder_of(where))
    cc.save(reached.state, cc.folder_of(where), reached.digest)
    return reached


def test_a_resumed_state_gives_the_features_of_the_whole_history(long_lines, tmp_path):
    lines, catalog = long_lines
    where = _warehouse(tmp_path / "warehouse.duckdb", lines)
    folder = cc.folder_of(where)
    assert _checkpoint(where, catalog, T0).resumed_from is None
    with engine.connect(where) as con:
        silver = engine.silver_or_empty(con)
        resumed = cc.reach(silver, catalog, T1, folder=folder)
        assert resumed.resumed_from == T0
        got = Sources(silver, catalog, _state=resumed.state).features("customer", T1)
        full = Sources(silver, catalog).features("customer", T1)
        # only the days since the checkpoint and those a year before them were reduced
        days = engine.to_frame(resumed.state.daily.customers.select(DAY))[DAY]
        every = engine.to_frame(Sources(silver, catalog).tables("customer").customers.select(DAY))[DAY]

    def inside(d: pd.Series) -> pd.Series:
        year = pd.Timedelta(days=365)
        return d.between(T0, T1, inclusive="left") | d.between(T0 - year, T1 - year, inclusive="left")

    assert len(days) and inside(days).all() and len(days) == inside(every).sum() < len(every) / 2
    assert got["customer_id"].str.endswith("-new").any()  # customers first seen after T0 joined
    # orders left the 365-day window (frequency 0: only last year's orders) and others are in it
    assert got["frequency"].eq(0).any() and got["frequency"].gt(0).any() and got["clv_12m"].notna().all()
    pd.testing.assert_frame_equal(got, full, check_exact=True)


def test_a_changed_line_before_the_checkpoint_starts_over(long_lines, tmp_path):
    lines, catalog = long_lines
    where = _warehouse(tmp_path / "warehouse.duckdb", lines)
    folder = cc.folder_of(where)
    _checkpoint(where, catalog, T0)
    changed = lines.copy()
    row = changed.index[changed["order_ts"] < T0 - pd.Timedelta(days=30)][5]
    changed.loc[row, "amount"] += 1.0
    _warehouse(where, changed)
    with engine.connect(where) as con:
        silver = engine.silver_or_empty(con)
        again = cc.reach(silver, catalog, T1, folder=folder)
        assert again.resumed_from is None
        full = Sources(silver, catalog).features("customer", T1)
        got = Sources(silver, catalog, _state=again.state).features("customer", T1)
        pd.testing.assert_frame_equal(got, full)


def test_only_the_latest_checkpoints_are_kept(long_lines, tmp_path):
    lines, catalog = long_lines
    where = _warehouse(tmp_path / "warehouse.duckdb", lines)
    folder = cc.folder_of(where)
    instants = [T0 + pd.Timedelta(days=7 * k) for k in range(cc.KEEP + 2)]
    for at in instants:
        _checkpoint(where, catalog, at)
    assert cc.saved(folder) == sorted(instants, reverse=True)[: cc.KEEP]
