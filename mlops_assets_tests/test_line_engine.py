"""The line-level steps run in the engine (core/engine.py: Ibis on DuckDB, out of core) give what
their pandas implementations gave (line_reference.py): the same rows, floats within 1e-9
relative, on the generated sample, on a real order log (CDNOW), and read from a warehouse in
either format (a DuckDB file, Delta tables)."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from mlops_assets.core import clv, engine
from mlops_assets.core import series as series_core
from mlops_assets.core.customer_features import customer_features
from mlops_assets.core.product_features import product_features
from mlops_assets_tests import feature_reference as fref
from mlops_assets_tests import line_reference as ref
from mlops_assets_tests import realdata

RTOL = 1e-9


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return realdata.cdnow_lines()


def _same(expected: pd.DataFrame, got: pd.DataFrame) -> None:
    assert len(expected) > 0  # an empty answer would agree with anything
    pd.testing.assert_frame_equal(
        expected.reset_index(drop=True),
        got.reset_index(drop=True),
        check_exact=False,
        rtol=RTOL,
        check_dtype=False,
    )


def _text(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns compared as Python strings (pandas and arrow text are the same values)."""
    return frame.astype({c: object for c in frame.columns if frame[c].dtype != float and c != "period"})


@pytest.mark.parametrize("freq", ["D", "W"])
def test_sales_series_equals_the_pandas_reference(small_lines, freq):
    silver, products, _ = small_lines
    start, end = pd.Timestamp("2023-01-01"), pd.Timestamp("2023-04-01")
    levels = ["total", "store", "category"]
    expected = ref.sales_series(silver, products, freq, levels, start, end)
    got = series_core.sales_series(silver, products, freq, levels, start, end)
    assert got.ids() == expected.ids() and len(got.ids()) > 3
    assert got.notes == expected.notes
    _same(_text(expected.frame), _text(got.frame))


def test_sales_series_on_a_real_log_skips_the_absent_levels(cdnow):
    start, end = pd.Timestamp("1997-01-01"), pd.Timestamp("1998-07-01")
    expected = ref.sales_series(cdnow, None, "W", ["total", "store", "category"], start, end)
    got = series_core.sales_series(cdnow, None, "W", ["total", "store", "category"], start, end)
    assert got.ids() == ["total"] and got.notes == expected.notes
    _same(_text(expected.frame), _text(got.frame))


@pytest.mark.parametrize("week_ends", ["FRI", "WED"])
def test_weeks_ending_on_another_weekday_equal_the_pandas_reference(small_lines, cdnow, week_ends):
    silver, products, _ = small_lines
    start, end = pd.Timestamp("2023-01-01"), pd.Timestamp("2023-04-01")
    levels = ["total", "store", "category"]
    expected = ref.sales_series(silver, products, "W", levels, start, end, week_ends=week_ends)
    got = series_core.sales_series(silver, products, "W", levels, start, end, week_ends=week_ends)
    first_day = series_core.WEEKDAYS.index(week_ends) + 1
    assert set(got.frame["period"].dt.dayofweek) == {first_day % 7}  # labelled by the first day
    _same(_text(expected.frame), _text(got.frame))
    expected, _ = ref.bottom_series(cdnow, None, "W", pd.Timestamp("1998-07-01"), week_ends)
    got, _ = series_core.bottom_series(cdnow, None, "W", pd.Timestamp("1998-07-01"), week_ends)
    assert len(got) > 50
    _same(_text(expected), _text(got))


def test_catalog_bottom_series_equals_the_pandas_reference(small_lines):
    silver, products, _ = small_lines
    end = pd.Timestamp("2023-04-01")
    # a product off the catalog goes to category 'unknown', and says so in a note
    catalog = products[products["product_id"] != silver["product_id"].value_counts().index[0]]
    for freq in ("D", "W"):
        expected, notes = ref.bottom_series(silver, catalog, freq, end)
        got, got_notes = series_core.bottom_series(silver, catalog, freq, end)
        assert got_notes == notes and any("category 'unknown'" in n for n in notes)
        _same(_text(expected), _text(got))


def test_rfm_summary_and_clv_validation_equal_the_pandas_reference(cdnow, small_lines):
    for lines, as_of in [
        (cdnow, pd.Timestamp("1997-10-01")),
        (cdnow, pd.Timestamp("1998-01-01 12:00")),  # not at midnight: the grouped path
        (small_lines[0], pd.Timestamp("2023-03-15")),
    ]:
        expected, got = ref.rfm_summary(lines, as_of), clv.rfm_summary(lines, as_of)
        assert list(got.index) == list(expected.index)  # sorted by customer id, as before
        _same(expected, got)
    expected = ref.validate_clv(cdnow, pd.Timestamp("1997-10-01"), 180)
    got = clv.validate_clv(cdnow, pd.Timestamp("1997-10-01"), 180)
    assert got["customers"] == expected["customers"] > 10_000
    for method in ("model", "naive"):
        for metric, value in expected[method].items():
            assert got[method][metric] == pytest.approx(value, rel=RTOL)


def _published(frame: pd.DataFrame, where) -> None:
    """The lines as the warehouse holds them: silver.silver_transactions."""
    if str(where).endswith(".duckdb"):
        with duckdb.connect(str(where)) as con:
            con.execute("create schema silver")
            con.execute("create table silver.silver_transactions as select * from frame")
        return
    from deltalake import write_deltalake

    write_deltalake(str(where / "silver" / "silver_transactions"), frame)


@pytest.mark.parametrize("fmt", ["duckdb", "delta"])
def test_steps_read_the_lines_from_the_warehouse(small_lines, tmp_path, fmt):
    """Over a warehouse, the lines stay in the engine: the steps get an Ibis table on it, and
    answer what they answer on the frame."""
    silver, products, _ = small_lines
    where = tmp_path / ("warehouse.duckdb" if fmt == "duckdb" else "warehouse")
    _published(silver.assign(order_ts=silver["order_ts"].astype("datetime64[us]")), where)
    levels, start, end = (
        ["total", "store", "category"],
        pd.Timestamp("2023-01-01"),
        pd.Timestamp("2023-04-01"),
    )
    expected = ref.sales_series(silver, products, "D", levels, start, end)
    with engine.connect(where) as con:
        lines = engine.silver(con)
        assert lines is not None and lines.count().execute() == len(silver)
        got = series_core.sales_series(lines, products, "D", levels, start, end)
        summary = clv.rfm_summary(lines, pd.Timestamp("2023-03-01"))
    _same(_text(expected.frame), _text(got.frame))
    _same(ref.rfm_summary(silver, pd.Timestamp("2023-03-01")), summary)


def test_a_warehouse_without_silver_has_no_lines(tmp_path):
    where = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(where)) as con:
        con.execute("create schema silver")
    with engine.connect(where) as con:
        assert engine.silver(con) is None


# ---- features: the engine's reduced tables against the numpy implementation ---------------------


def _features_equal(expected: pd.DataFrame, got: pd.DataFrame, key: str, skip: tuple = ()) -> None:
    """The same entities and columns; floats within 1e-9 relative (and a billionth of a currency
    unit absolute: an exact sum of lines that cancel is 0, where a float sum left 2e-14)."""
    assert len(expected) > 0 and list(got.columns) == list(expected.columns)
    expected, got = expected.set_index(key).sort_index(), got.set_index(key).sort_index()
    assert list(got.index) == list(expected.index)
    for column in expected.columns.drop(list(skip)):
        if expected[column].dtype.kind == "f":
            pd.testing.assert_series_equal(
                got[column], expected[column], rtol=RTOL, atol=1e-9, check_dtype=False
            )
        else:
            assert (got[column].astype(str) == expected[column].astype(str)).all(), column


def _distinct_bought(lines: pd.DataFrame, as_of: pd.Timestamp) -> pd.Series:
    """Distinct products each customer bought before as_of, recomputed here in pandas."""
    bought = lines[(lines["order_ts"] < as_of) & (lines["quantity"] > 0) & lines["customer_id"].notna()]
    return bought.groupby("customer_id")["product_id"].nunique()


@pytest.mark.parametrize("as_of", ["2023-02-13", "2023-04-01"])
def test_features_equal_the_numpy_reference_on_the_sample(small_lines, as_of):
    silver, products, inventory = small_lines
    silver = silver.sort_values("order_ts", kind="stable")  # the reference's "first line" is its row order
    as_of = pd.Timestamp(as_of)
    got = customer_features(silver, as_of, products)
    # distinct_products counts the products a customer bought: the reference counted a pair only
    # when its first line in row order was a purchase (a return first hid later purchases)
    _features_equal(
        fref.customer_features(silver, as_of, products), got, "customer_id", ("distinct_products",)
    )
    distinct = _distinct_bought(silver, as_of).reindex(got["customer_id"].astype(object)).fillna(0)
    assert (got["distinct_products"].to_numpy() == distinct.to_numpy()).all() and distinct.max() > 3
    _features_equal(
        fref.product_features(silver, products, inventory, as_of),
        product_features(silver, products, inventory, as_of),
        "product_id",
    )


def test_customer_features_equal_the_numpy_reference_on_a_real_log(cdnow):
    lines = cdnow.sort_values("order_ts", kind="stable")
    as_of = pd.Timestamp("1997-10-01")
    expected = fref.customer_features(lines, as_of)
    got = customer_features(lines, as_of)
    _features_equal(expected, got, "customer_id")
    assert got["clv_12m"].notna().all() and (got["clv_12m"] > 0).sum() > 10_000


def test_product_windows_are_whole_days_for_date_only_lines():
    """A log of dates (every line at midnight) has 28 days of sales in the 28-day velocity: the
    reference's window left out the first day's lines (their age was exactly 28 days)."""
    days = pd.date_range("2024-01-01", periods=60, freq="D")
    lines = pd.DataFrame({"order_id": [f"O{i}" for i in range(60)], "order_ts": days, "customer_id": "C1",
                          "product_id": "P1", "store_id": "S1", "quantity": 1.0, "unit_price": 2.0,
                          "amount": 2.0})  # fmt: skip
    as_of = pd.Timestamp("2024-03-01")
    got = product_features(lines, None, None, as_of).set_index("product_id")
    assert got.loc["P1", "sales_velocity_28d"] == pytest.approx(1.0)  # one unit on each of 28 days
    assert fref.product_features(lines, None, None, as_of).set_index("product_id").loc[
        "P1", "sales_velocity_28d"
    ] == pytest.approx(27 / 28)


def test_running_totals_give_each_instant_what_one_step_gives(small_lines):
    """Snapshots advance the customers' running totals a week at a time (core/customer_state.py);
    the features of every instant equal, to the bit, those of a state brought there in one step."""
    from mlops_assets.core import feature_store as fs

    silver, products, inventory = small_lines
    dates = fs.snapshot_dates(pd.Timestamp("2023-01-01"), pd.Timestamp("2023-04-01"))
    sources = fs.Sources(silver, products, inventory)
    stepped = {d: sources.features("customer", d) for d in dates}
    for when in dates[::3] + [dates[-1]]:
        once = customer_features(silver, when, products)
        assert len(once) > 100 or when < pd.Timestamp("2023-01-10")
        pd.testing.assert_frame_equal(stepped[when], once)


def test_totals_beyond_exact_billionths_are_refused_with_the_customer_named():
    lines = pd.DataFrame({"order_id": ["O1", "O2"], "order_ts": pd.to_datetime(["2024-01-02", "2024-01-03"]),
                          "customer_id": ["BIG", "C2"], "product_id": "P1", "store_id": "S1",
                          "quantity": 1.0, "unit_price": [5e9, 10.0], "amount": [5e9, 10.0]})  # fmt: skip
    with pytest.raises(ValueError, match="customer BIG's gross totals 5e\\+09"):
        customer_features(lines, pd.Timestamp("2024-02-01"))
    assert len(customer_features(lines[lines["customer_id"] == "C2"], pd.Timestamp("2024-02-01"))) == 1
