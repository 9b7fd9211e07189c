"""Feed-level faults: the share of returns, and days far below their weekday's usual volume."""

import pandas as pd

from mlops_assets.core import feed_checks


def test_return_share_counts_negative_quantities():
    silver = pd.DataFrame({"quantity": [1.0, 2.0, -1.0, 3.0]})
    assert feed_checks.return_share(silver) == 0.25
    assert feed_checks.return_share(silver.iloc[:0]) == 0.0


def test_a_day_far_below_its_weekday_is_found_and_a_quiet_weekday_is_not():
    days = pd.date_range("2024-01-01", "2024-03-31", freq="D")
    # Sundays are always quiet (10 lines), other days busy (100)
    counts = pd.Series([10 if d.dayofweek == 6 else 100 for d in days], index=days)
    counts[pd.Timestamp("2024-03-13")] = 12  # a Wednesday cut short
    counts = counts.drop(pd.Timestamp("2024-03-14"))  # a Thursday never sent
    judged = pd.date_range("2024-03-01", "2024-03-31", freq="D")
    low = feed_checks.low_volume_days(counts, judged, ratio=0.2)
    assert low["day"].dt.strftime("%Y-%m-%d").tolist() == ["2024-03-13", "2024-03-14"]
    assert low["lines"].tolist() == [12, 0] and low["usual"].tolist() == [100.0, 100.0]
    # a small feed's weekdays (usually under min_usual lines) are not judged
    assert feed_checks.low_volume_days(counts // 10, judged, ratio=0.2, min_usual=30).empty
    # without eight weeks of history nothing is judged
    early = pd.date_range("2024-01-01", "2024-01-20", freq="D")
    assert feed_checks.low_volume_days(counts, early, ratio=0.2).empty
