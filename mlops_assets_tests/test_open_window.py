"""An open-ended window (sources.yaml `window` without `end_date`): the partitions grow with the
calendar to the month in progress, the daily schedule ingests the day that just ended, and a
build over the months that hold data ends where the data ends (no zero-filled days up to
today, no forecast from an empty present)."""

import datetime as dt

import dagster as dg
import pandas as pd
import pytest

from mlops_assets.assets.partitions import TransactionWindow, partition_key
from mlops_assets.definitions import build_definitions
from mlops_assets.settings import load_settings
from mlops_assets_tests.conftest import edit_sources, forecasting_keys, read_table, run_graph


def open_window(data_dir) -> None:
    edit_sources(data_dir, lambda s: s.update(window={"start_date": "2023-01-01"}))


def test_open_window_partitions_reach_the_month_in_progress():
    window = TransactionWindow(dt.date(2023, 1, 1), None)
    at = dt.datetime(2026, 12, 1, 1, tzinfo=dt.UTC)
    keys = window.partitions.get_partition_keys(current_time=at)
    assert (keys[0], keys[-1], len(keys)) == ("2023-01", "2026-12", 48)
    later = window.partitions.get_partition_keys(current_time=dt.datetime(2027, 2, 15, tzinfo=dt.UTC))
    assert later[-1] == "2027-02" and len(later) == 50
    assert window.bounds.end == pd.Timestamp.now().normalize()  # evaluated when used
    closed = TransactionWindow(dt.date(2023, 1, 1), dt.date(2023, 3, 31))
    assert closed.partitions.get_partition_keys(current_time=at)[-1] == "2023-03"


def test_the_daily_schedule_of_an_open_window_ingests_yesterday(small_data_dir):
    open_window(small_data_dir)
    settings = load_settings(small_data_dir)
    assert settings.window.end_date is None
    defs = build_definitions(settings)
    daily = defs.resolve_schedule_def("daily_monitoring_schedule")
    today = pd.Timestamp.now(tz="UTC").floor("D")
    yesterday = (today - pd.Timedelta(days=1)).date()
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=(today + pd.Timedelta(hours=1)).to_pydatetime(),
            repository_def=defs.get_repository_def(),
        )
        (run,) = daily.evaluate_tick(context).run_requests
    assert run.partition_key == partition_key(yesterday) and run.run_key == f"day:{yesterday}"


@pytest.mark.slow
def test_a_build_with_an_open_window_ends_where_the_data_ends(small_data_dir):
    open_window(small_data_dir)
    edit_sources(
        small_data_dir, lambda s: s.update(forecast={"freq": "D", "horizon": 7, "levels": ["total", "store"]})
    )
    result = run_graph(small_data_dir, "2023-01-01", "2023-03-31", selection=forecasting_keys(small_data_dir))
    assert result.success
    bronze = read_table(small_data_dir, "bronze.bronze_transactions")
    silver = read_table(small_data_dir, "silver.silver_transactions")
    quarantined = read_table(small_data_dir, "silver.quarantined_transactions")
    assert len(bronze) > 0 and len(silver) + len(quarantined) == len(bronze)
    series = read_table(small_data_dir, "forecasting.sales_series")
    assert series["period"].max() == pd.Timestamp("2023-03-31")  # not zero-filled up to today
    assert series.groupby("series_id").size().eq(90).all()
    forecasts = read_table(small_data_dir, "forecasting.sales_forecasts")
    assert forecasts["period"].min() == pd.Timestamp("2023-04-01") and forecasts["step"].max() == 7
