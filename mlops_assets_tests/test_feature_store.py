"""Retrieval: the as-of join on snapshots, the direct fallback, the online index, and
train/serve consistency."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlops_assets.core import feature_store as fs
from mlops_assets.core import snapshots
from mlops_assets.core.feature_registry import AS_OF, VERSION
from mlops_assets.core.snapshots import DIGEST
from mlops_assets.core.warehouse import read_table

AS_OF_LATEST = pd.Timestamp("2023-04-01")


@pytest.fixture(scope="module")
def store(small_lines):
    tx, catalog, inventory = small_lines
    sources = fs.Sources(tx, catalog, inventory)
    dates = fs.snapshot_dates(pd.Timestamp("2023-01-01"), AS_OF_LATEST)
    snapshots = {g: sources.snapshots(g, dates) for g in ("customer", "product")}
    online = fs.OnlineFeatureStore({g: sources.features(g, AS_OF_LATEST) for g in ("customer", "product")})
    return fs.FeatureStore(snapshots, sources), online, sources


def test_snapshot_dates_are_weekly_and_end_at_as_of():
    dates = fs.snapshot_dates(pd.Timestamp("2023-01-01"), pd.Timestamp("2023-01-20"))
    assert dates == [pd.Timestamp("2023-01-02"), pd.Timestamp("2023-01-09"), pd.Timestamp("2023-01-16"),
                     pd.Timestamp("2023-01-20")]  # fmt: skip


@pytest.mark.parametrize("group,ids", [("customer", None), ("product", ["P0001", "P0042", "P0200"])])
def test_historical_at_as_of_equals_online(store, group, ids):
    offline, online, sources = store
    latest = sources.features(group, AS_OF_LATEST)
    key = latest.columns[0]
    ids = ids or list(latest[key].sample(25, random_state=1))
    hist = offline.get_historical_features(pd.DataFrame({key: ids, "event_ts": AS_OF_LATEST}), group)
    served = online.get_online_frame(ids, group)
    assert (hist[AS_OF] == AS_OF_LATEST).all()
    pd.testing.assert_frame_equal(hist[served.columns], served)
    # the serving path (plain values) carries the very same numbers
    plain = online.get_online_features(ids, group)
    assert plain[key] == ids
    for col in served.columns[1:]:
        assert [None if pd.isna(v) else v for v in served[col]] == plain[col], col


def test_between_snapshots_the_earlier_one_is_used(store):
    offline, _, sources = store
    ts = pd.Timestamp("2023-02-15 13:30")  # a Wednesday: the Monday before is 2023-02-13
    expected = sources.features("customer", pd.Timestamp("2023-02-13"))
    ids = list(expected["customer_id"].head(10))
    hist = offline.get_historical_features(pd.DataFrame({"customer_id": ids, "event_ts": ts}), "customer")
    assert (hist[AS_OF] == pd.Timestamp("2023-02-13")).all()
    pd.testing.assert_frame_equal(
        hist[expected.columns].reset_index(drop=True), expected.head(10).reset_index(drop=True)
    )


def test_before_the_first_snapshot_features_are_computed_directly(store):
    offline, _, sources = store
    late = {g: t[t[AS_OF] >= pd.Timestamp("2023-02-01")] for g, t in offline.snapshots.items()}
    ts = pd.Timestamp("2023-01-20 18:00")  # before every kept snapshot
    expected = sources.features("customer", pd.Timestamp("2023-01-20"))  # data before the day
    ids = list(expected["customer_id"].head(5))
    hist = fs.FeatureStore(late, sources).get_historical_features(
        pd.DataFrame({"customer_id": ids, "event_ts": ts}), "customer"
    )
    assert (hist[AS_OF] == pd.Timestamp("2023-01-20")).all()
    pd.testing.assert_frame_equal(hist[expected.columns], expected.head(5).reset_index(drop=True))


def test_rows_keep_their_order_and_mix_both_paths(store):
    offline, _, _ = store
    entity = pd.DataFrame(
        {
            "customer_id": ["C000010", "C000010", "C000010"],
            "event_ts": ["2023-03-30", "2023-01-01 12:00", "2023-02-20"],
        }
    )
    hist = offline.get_historical_features(entity, "customer")
    assert list(hist[AS_OF]) == [
        pd.Timestamp("2023-03-27"),
        pd.Timestamp("2023-01-01"),
        pd.Timestamp("2023-02-20"),
    ]


def test_snapshots_of_another_feature_version_are_not_served(store):
    offline, _, sources = store
    stale = {g: t.assign(**{VERSION: "customer-old"}) for g, t in offline.snapshots.items()}
    old_store = fs.FeatureStore(stale, sources)
    hist = old_store.get_historical_features(
        pd.DataFrame({"customer_id": ["C000010"], "event_ts": ["2023-02-15 10:00"]}), "customer"
    )
    assert hist[AS_OF].iloc[0] == pd.Timestamp("2023-02-15")  # recomputed, not the stale row


def test_unknown_ids_come_back_null_online(store):
    _, online, _ = store
    out = online.get_online_features(["nobody", "P0001"], "product")
    assert out["product_id"] == ["nobody", "P0001"]
    assert all(values[0] is None for col, values in out.items() if col != "product_id")
    assert out["category"][1] is not None and out["price"][1] > 0
    assert online.get_online_frame(["nobody"], "product")["price"].isna().all()


def test_historical_needs_entity_and_timestamp(store):
    offline, _, _ = store
    with pytest.raises(KeyError, match="event_ts"):
        offline.get_historical_features(pd.DataFrame({"customer_id": ["C1"]}), "customer")


# ---- incremental snapshots: only instants whose inputs changed are computed --------------------


def _warehouse(tmp_path, lines: pd.DataFrame, fmt: str):
    """A warehouse holding `lines` as silver.silver_transactions, in format `fmt`."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    where = tmp_path / ("warehouse.duckdb" if fmt == "duckdb" else "warehouse")
    if fmt == "duckdb":
        import duckdb

        with duckdb.connect(str(where)) as con:
            con.execute("create schema if not exists silver")
            con.execute("create or replace table silver.silver_transactions as select * from lines")
    else:
        from deltalake import write_deltalake

        write_deltalake(str(where / "silver" / "silver_transactions"), lines, mode="overwrite")
    return where


def _stored(where, group: str) -> pd.DataFrame:
    table = read_table(where, fs.TABLES[group][1])
    return table.sort_values([AS_OF, table.columns[0]], ignore_index=True)


@pytest.mark.parametrize("fmt", ["duckdb", "delta"])
@pytest.mark.parametrize("group", ["customer", "product"])
def test_refresh_recomputes_only_instants_after_a_changed_day(small_lines, tmp_path, group, fmt):
    tx, catalog, inventory = small_lines
    tx = tx.assign(order_ts=tx["order_ts"].astype("datetime64[us]"))
    dates = fs.snapshot_dates(pd.Timestamp("2023-01-01"), AS_OF_LATEST)
    where = _warehouse(tmp_path / "a", tx, fmt)
    first = snapshots.refresh_snapshots(where, group, dates, catalog, inventory)
    assert first.computed == dates and not first.reused
    stored = _stored(where, group)
    assert set(stored[AS_OF]) == set(dates) and stored[DIGEST].nunique() == len(dates)
    # the table is the features of each instant, as a frame of the same lines gives them
    direct = fs.Sources(tx, catalog, inventory).snapshots(group, dates)
    pd.testing.assert_frame_equal(
        stored.drop(columns=DIGEST), direct.sort_values([AS_OF, direct.columns[0]], ignore_index=True),
        check_dtype=False, check_exact=False, rtol=1e-12,
    )  # fmt: skip

    # one line of 2023-03-08 changes: snapshots up to that day are kept, later ones recomputed
    changed = tx.copy()
    row = changed.index[changed["order_ts"].dt.strftime("%Y-%m-%d") == "2023-03-08"][0]
    changed.loc[row, "quantity"] = changed.loc[row, "quantity"] + 1
    changed.loc[row, "amount"] = changed.loc[row, "quantity"] * changed.loc[row, "unit_price"]
    _warehouse(tmp_path / "a", changed, fmt)
    again = snapshots.refresh_snapshots(where, group, dates, catalog, inventory)
    cut = pd.Timestamp("2023-03-08")
    assert again.reused == [d for d in dates if d <= cut] and again.computed == [d for d in dates if d > cut]
    # the kept and recomputed table is the one a full computation gives
    fresh = _warehouse(tmp_path / "b", changed, fmt)
    assert snapshots.refresh_snapshots(fresh, group, dates, catalog, inventory).computed == dates
    pd.testing.assert_frame_equal(_stored(where, group), _stored(fresh, group), check_dtype=False)
    # nothing changed: nothing computed; an instant no longer wanted is dropped
    assert not snapshots.refresh_snapshots(where, group, dates, catalog, inventory).computed
    snapshots.refresh_snapshots(where, group, dates[1:], catalog, inventory)
    assert set(_stored(where, group)[AS_OF]) == set(dates[1:])


def test_a_store_over_the_warehouse_reads_only_the_requested_entities(small_lines, tmp_path):
    """from_warehouse reads the snapshot rows of the requested entities (and, for events before
    the first snapshot, the lines before them), and answers what the in-memory store answers."""
    tx, catalog, inventory = small_lines
    where = _warehouse(tmp_path, tx.assign(order_ts=tx["order_ts"].astype("datetime64[us]")), "duckdb")
    import duckdb

    with duckdb.connect(str(where)) as con:  # the catalog and inventory, as bronze publishes them
        con.execute("create schema bronze")
        con.execute("create table bronze.bronze_products as select * from catalog")
        con.execute("create table bronze.bronze_inventory as select * from inventory")
    dates = fs.snapshot_dates(pd.Timestamp("2023-01-01"), AS_OF_LATEST)[2:]  # from January 16th
    snapshots.refresh_snapshots(where, "customer", dates, catalog, inventory)
    ids = list(tx["customer_id"].dropna().drop_duplicates().sample(15, random_state=3))
    events = pd.DataFrame(
        {"customer_id": ids * 2, "event_ts": ["2023-03-15 10:00"] * 15 + ["2023-01-12 18:00"] * 15}
    )
    warehouse_store = fs.FeatureStore.from_warehouse(where)
    read = warehouse_store.snapshots("customer", pd.Series(ids))
    assert set(read["customer_id"]) <= set(ids) and read[AS_OF].nunique() > 10
    got = warehouse_store.get_historical_features(events, "customer")
    sources = fs.Sources(tx, catalog, inventory)
    in_memory = fs.FeatureStore({"customer": sources.snapshots("customer", dates)}, sources)
    assert (got[AS_OF].iloc[15:] == pd.Timestamp("2023-01-12")).all()  # before the first snapshot
    assert got["tenure_days"].iloc[15:].notna().sum() > 0  # computed from the lines before then
    pd.testing.assert_frame_equal(
        got, in_memory.get_historical_features(events, "customer"), check_dtype=False
    )


@pytest.mark.parametrize(
    "value, kind, n",
    [("v3-abc", pa.large_string(), 5), ("", pa.large_string(), 3), ("x", pa.large_string(), 0),
     (pd.Timestamp("2024-03-04").value, pa.timestamp("ns"), 4)],  # fmt: skip
)
def test_a_repeated_constant_column_equals_arrows_own(value, kind, n):
    """The snapshots' constant columns (instant, version, digest) built from two buffers equal
    the array Arrow's take gives, and are valid Arrow."""
    got = fs.repeated(value, kind, n)
    got.validate(full=True)
    assert got.equals(pa.array([value], kind).take(pa.array(np.zeros(n, np.int32))))
