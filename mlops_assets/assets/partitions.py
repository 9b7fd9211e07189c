"""Monthly partitions of the transaction layers, over sources.yaml `window`.

Why monthly: Dagster writes a planned and a materialization event (and check evaluations) per
asset and partition, so daily partitions made a build's cost follow the days in its window
instead of its lines (730 days: about 6,000 events before any data moved). A month is the
unit a new day re-writes (a month of lines takes milliseconds to split), and the tables keep
the day of every line (`partition_date`), so SQL and reports stay daily."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import dagster as dg
import pandas as pd

from mlops_assets.core.quality import Window
from mlops_assets.settings import Settings

# one run writes a whole partition range, so one CLI command builds the graph (ARCHITECTURE.md)
SINGLE_RUN = dg.BackfillPolicy.single_run()
KEY_FORMAT = "%Y-%m"  # partition keys: 2023-01 ... 2024-12


def partition_key(day) -> str:
    """The key of the partition that holds a day (a date, a timestamp or an ISO string)."""
    return pd.Timestamp(day).strftime(KEY_FORMAT)


@dataclass(frozen=True)
class TransactionWindow:
    start: dt.date
    end: dt.date | None  # inclusive last day; None = open-ended (up to yesterday)

    @property
    def partitions(self) -> dg.MonthlyPartitionsDefinition:
        """The months that hold the window's days; the month in progress is one too (end_offset
        1), so a new day refreshes it, up to the window's end_date when there is one."""
        end = None if self.end is None else partition_key(pd.Timestamp(self.end) + pd.offsets.MonthBegin(1))
        return dg.MonthlyPartitionsDefinition(
            start_date=partition_key(self.start), end_date=end, fmt=KEY_FORMAT, end_offset=1
        )

    @property
    def bounds(self) -> Window:
        """Evaluated when used, so an open-ended window grows with the calendar."""
        end = pd.Timestamp(self.end) + pd.Timedelta(days=1) if self.end else pd.Timestamp.now().normalize()
        return Window(pd.Timestamp(self.start), end)


def window_of(settings: Settings) -> TransactionWindow:
    return TransactionWindow(settings.window.start_date, settings.window.end_date)


def run_window(context: dg.AssetExecutionContext) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start, end) of the partitions this run materializes, as naive timestamps."""
    tw = context.partition_time_window
    return pd.Timestamp(tw.start).tz_localize(None), pd.Timestamp(tw.end).tz_localize(None)
