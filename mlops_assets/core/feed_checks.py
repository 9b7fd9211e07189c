"""Feed-level faults no single line shows: signs flipped across a file, days partly missing.

A sale written with a negative quantity looks like a valid return, and a day whose file was
cut short has only valid lines; both show only against what the feed usually looks like.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

WEEKS = 8  # a day is compared with the same weekday over this many weeks before it
MIN_REFERENCE_DAYS = 4  # fewer earlier same-weekday days: no reference, no verdict


def return_share(silver: pd.DataFrame) -> float:
    """Share of the lines with a negative quantity (returns)."""
    qty = silver["quantity"]
    return float((qty < 0).mean()) if len(qty) else 0.0


def low_volume_days(
    counts: pd.Series, judged: pd.DatetimeIndex, ratio: float, min_usual: float = 30
) -> pd.DataFrame:
    """Days of `judged` whose line count is below `ratio` times the median of the same weekday
    over the WEEKS weeks before (from `counts`: day -> lines, days without lines absent or 0;
    days before the first day of `counts` are no history). Only weekdays that usually have at
    least `min_usual` lines are judged: a small feed is bursty (a bike wholesaler's 12-line
    Tuesday is often a 0-line one). Columns: day, lines, usual."""
    empty = pd.DataFrame(columns=["day", "lines", "usual"])
    if ratio <= 0 or counts.empty or judged.empty:
        return empty
    start = counts.index.min()
    days = pd.date_range(start, max(counts.index.max(), judged.max()), freq="D")
    lines = counts.groupby(level=0).sum().reindex(days, fill_value=0).astype(float)
    # one column per week back: the same weekday w weeks earlier (NaN before the history starts)
    back = np.column_stack([lines.shift(7 * w).to_numpy() for w in range(1, WEEKS + 1)])
    enough = (~np.isnan(back)).sum(axis=1) >= MIN_REFERENCE_DAYS
    usual = np.full(len(days), np.nan)
    if enough.any():
        usual[enough] = np.nanmedian(back[enough], axis=1)
    table = pd.DataFrame({"day": days, "lines": lines.to_numpy(), "usual": usual})
    table = table[table["day"].isin(judged) & (table["usual"] >= max(min_usual, 1e-9))]
    low = table[table["lines"] < ratio * table["usual"]].astype({"lines": "int64"})
    return low.reset_index(drop=True) if len(low) else empty
