"""Daily partitions of the transaction layers, over sources.yaml `window`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import dagster as dg
import pandas as pd

from mlops_assets.core.quality import Window
from mlops_assets.settings import Settings

# one run writes a whole partition range, so one CLI command builds the graph (ARCHITECTURE.md)
SINGLE_RUN = dg.BackfillPolicy.single_run()


@dataclass(frozen=True)
class TransactionWindow:
    start: dt.date
    end: dt.date | None  # inclusive last day; None = open-ended (up to yesterday)

    @property
    def partitions(self) -> dg.DailyPartitionsDefinition:
        if self.end is None:
            return dg.DailyPartitionsDefinition(start_date=self.start.isoformat())
        return dg.DailyPartitionsDefinition(
            start_date=self.start.isoformat(), end_date=(self.end + dt.timedelta(days=1)).isoformat()
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
