"""Published bronze, silver and quarantine always reconcile, and a re-run never loses a day."""

from __future__ import annotations

import pandas as pd

from mlops_assets_tests.conftest import (
    INGESTION,
    check_results,
    group_keys,
    read_table,
    rewrite_transactions,
    run_graph,
)

START, END = "2023-01-01", "2023-03-31"
TABLES = ["bronze.bronze_transactions", "silver.silver_transactions", "silver.quarantined_transactions"]


def tables(data_dir) -> dict[str, pd.DataFrame]:
    return {t: read_table(data_dir, t) for t in TABLES}


def reconciles(published: dict[str, pd.DataFrame]) -> bool:
    """Published bronze = silver + quarantine, line by line (file, row, day: a kept day keeps
    the record numbers of the file version that carried it)."""
    key = lambda f: set(zip(f["source_file"], f["source_row"], f["partition_date"], strict=True))  # noqa: E731
    bronze, silver, quarantined = (published[t] for t in TABLES)
    return key(bronze) == key(silver) | key(quarantined) and not key(silver) & key(quarantined)


def test_a_silver_gate_block_leaves_every_layer_as_published(small_data_dir):
    selection = group_keys(small_data_dir, *INGESTION)
    assert run_graph(small_data_dir, START, END, selection=selection).success
    before = tables(small_data_dir)
    assert reconciles(before) and len(before["bronze.bronze_transactions"]) > 5000

    # prices in cents on a third of the lines: bronze reads them fine, silver's share gate blocks
    def cents(df):
        third = df.index % 3 == 0
        df.loc[third, "unit_price"] = (df.loc[third, "unit_price"].astype(float) * 100).round().astype(str)
        return df

    rewrite_transactions(small_data_dir, cents)
    result = run_graph(small_data_dir, START, END, selection=selection)
    assert not result.success
    checks = check_results(result)
    assert not checks["quarantine_share_within_limit"].passed
    assert checks["matches_source_schema"].passed  # bronze alone would have published
    written = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert not written & {"bronze_transactions", "silver_transactions", "quarantined_transactions"}
    after = tables(small_data_dir)
    for table in TABLES:
        pd.testing.assert_frame_equal(after[table], before[table])
    assert reconciles(after)


def test_a_feed_missing_days_keeps_them_as_published(small_data_dir):
    selection = group_keys(small_data_dir, *INGESTION)
    assert run_graph(small_data_dir, START, END, selection=selection).success
    before = tables(small_data_dir)
    gone = ["2023-02-06", "2023-02-07", "2023-02-08"]
    rewrite_transactions(small_data_dir, lambda df: df[~df["invoice_ts"].str[:10].isin(gone)])

    result = run_graph(small_data_dir, "2023-02-01", "2023-02-28", selection=selection)
    assert result.success  # a warning, not a block: the rest of the month is refreshed
    coverage = check_results(result)["feed_covers_published_days"]
    assert not coverage.passed and coverage.severity.value == "WARN"
    assert all(day in coverage.description for day in gone)
    after = tables(small_data_dir)

    def days(f: pd.DataFrame) -> pd.DataFrame:
        """The lines of the gone days (a line without a timestamp in the window takes the day of
        the lines around it, so it moves with them: such lines are counted, not compared)."""
        day = f["partition_date"].dt.strftime("%Y-%m-%d")
        return f[day.isin(gone) & (f["order_ts"].dt.floor("D") == f["partition_date"])]

    for table in TABLES:
        kept, published = days(after[table]), days(before[table])
        assert len(published) > 0 or table.endswith("quarantined_transactions")
        cols = list(published.columns)
        pd.testing.assert_frame_equal(
            kept[cols].sort_values(["source_file", "source_row"], ignore_index=True),
            published.sort_values(["source_file", "source_row"], ignore_index=True),
            check_dtype=False,
        )
        assert len(after[table]) == len(before[table])  # nothing lost, nothing doubled
    assert reconciles(after)

    # the next run with the days back in the feed replaces them from the files again
    report = read_table(small_data_dir, "quality.data_quality_report")
    assert report["partition_date"].dt.strftime("%Y-%m-%d").isin(gone).sum() == 3


def test_a_day_resent_under_a_later_date_keeps_that_days_published_lines(small_data_dir):
    """A feed whose file for 2023-02-07 now holds 2023-02-06's lines re-dated (same orders): they
    are quarantined as replays, and 2023-02-07's published lines stay, with a warning naming it."""
    selection = group_keys(small_data_dir, *INGESTION)
    assert run_graph(small_data_dir, START, END, selection=selection).success
    before = tables(small_data_dir)
    first, later = "2023-02-06", "2023-02-07"

    def resent(df):
        day = df["invoice_ts"].str[:10]
        again = df[day == first].copy()
        again["invoice_ts"] = later + again["invoice_ts"].str[10:]
        return pd.concat([df[day != later], again], ignore_index=True)

    rewrite_transactions(small_data_dir, resent)
    result = run_graph(small_data_dir, "2023-02-01", "2023-02-28", selection=selection)
    assert result.success
    coverage = check_results(result)["feed_covers_published_days"]
    assert not coverage.passed and coverage.severity.value == "WARN"
    assert later in coverage.description and "quarantined" in coverage.description
    assert first not in coverage.description
    after = tables(small_data_dir)

    def on(f: pd.DataFrame, day: str) -> pd.DataFrame:
        return f[f["partition_date"].dt.strftime("%Y-%m-%d") == day]

    silver = "silver.silver_transactions"
    kept, published = on(after[silver], later), on(before[silver], later)
    assert len(published) > 50
    cols = list(published.columns)
    pd.testing.assert_frame_equal(
        kept[cols].sort_values(["source_file", "source_row"], ignore_index=True),
        published.sort_values(["source_file", "source_row"], ignore_index=True),
        check_dtype=False,
    )
    # the resent lines are in quarantine as replays, beside what was published: nothing lost
    replays = on(after["silver.quarantined_transactions"], later)
    replays = replays[replays["reason"] == "replayed_order"]
    assert len(replays) == (on(before[silver], first)["order_ts"].dt.floor("D") == pd.Timestamp(first)).sum()
    bronze = "bronze.bronze_transactions"
    assert len(on(after[bronze], later)) == len(on(before[bronze], later)) + len(replays)
    assert reconciles(after)
    report = read_table(small_data_dir, "quality.data_quality_report")
    row = report[report["partition_date"].dt.strftime("%Y-%m-%d") == later]
    assert len(row) == 1 and int(row["bronze_rows"].iloc[0]) == len(on(after[bronze], later))
    assert int(row["rule_replayed_order"].iloc[0]) >= len(replays)


def test_a_day_cut_short_warns_naming_it_and_still_publishes(small_data_dir):
    def cut(df):
        day = df["invoice_ts"].str[:10] == "2023-03-15"
        return df[~day | (df.index % 20 == 0)]  # one line in twenty of that Wednesday is left

    rewrite_transactions(small_data_dir, cut)
    result = run_graph(small_data_dir, START, END, selection=group_keys(small_data_dir, *INGESTION))
    assert result.success
    volumes = check_results(result)["day_volumes_plausible"]
    assert not volumes.passed and volumes.severity.value == "WARN"
    assert "2023-03-15 has" in volumes.description and "2023-03-14" not in volumes.description
