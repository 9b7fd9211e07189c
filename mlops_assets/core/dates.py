"""Day and month order of numeric dates ('05/03/2023'), decided from all of a column's values.

A parser that guesses the format from the first value reads '05/03/2023' month-first, and a
day-first file then lands on wrong dates wherever the day is 12 or less, silently. Here the
order is read off the whole column: a first field above 12 means day-first, a second field
above 12 means month-first; a column with both is mixed and one with neither is ambiguous,
and both are faults that name the column (set read.date_format in sources.yaml).
"""

from __future__ import annotations

import pandas as pd

PATTERN = r"^\s*(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2,4})\b"


def day_first(text: pd.Series) -> tuple[bool | None, str | None]:
    """(True: day-first, False: month-first, None: not a d/m date), and a fault sentence when
    the order cannot be told or is mixed."""
    text = text.dropna()
    head = text.head(100).astype(str)
    if head.empty or not head.str.match(PATTERN).any():  # ISO dates and the like: nothing to decide
        return None, None
    # the date part is enough, and a column holds few distinct dates (one per day)
    values = pd.Series(text.astype("string[pyarrow]").str.slice(0, 10).unique()).astype(str)
    if values.empty:
        return None, None
    parts = values.str.extract(PATTERN)
    numeric = parts.dropna()
    if len(numeric) < 0.5 * len(values):  # mostly not numeric day/month dates (ISO, names...)
        return None, None
    first, second = numeric[0].astype(int), numeric[1].astype(int)
    day_first_seen, month_first_seen = (first > 12).any(), (second > 12).any()
    if day_first_seen and month_first_seen:
        a = values[first.index[first > 12][0]]
        b = values[second.index[second > 12][0]]
        return None, f"mixes day-first ({a!r}) and month-first ({b!r}) dates; set read.date_format"
    if day_first_seen:
        return True, None
    if month_first_seen:
        return False, None
    example = values[numeric.index[0]]
    d, m = int(numeric[0].iloc[0]), int(numeric[1].iloc[0])
    if d == m and (numeric[0] == numeric[1]).all():
        return False, None  # every date reads the same either way
    return None, (
        f"holds dates whose day and month order cannot be told: no day above 12, so "
        f"{example!r} reads as day {d} of month {m} or day {m} of month {d}; "
        "set read.date_format in sources.yaml (e.g. '%d/%m/%Y %H:%M')"
    )
