"""Demand calendar of the synthetic retailer: trend, weekly and yearly seasonality, holidays."""

from __future__ import annotations

import holidays
import numpy as np
import pandas as pd

# Mon..Sun multipliers: a busy weekend, a quiet start of the week.
WEEKLY_PROFILE = np.array([0.85, 0.80, 0.85, 0.95, 1.15, 1.40, 1.00])
ANNUAL_GROWTH = 0.15  # the business grows ~15% a year


def demand_multiplier(days: pd.DatetimeIndex, country: str = "US") -> np.ndarray:
    """Relative order intensity per day (mean about 1)."""
    years = (days - days[0]).days.to_numpy() / 365.25
    trend = 1.0 + ANNUAL_GROWTH * years
    weekly = WEEKLY_PROFILE[days.dayofweek.to_numpy()]
    doy = days.dayofyear.to_numpy()
    # summer bump, late-winter lull, and a Christmas ramp peaking mid-December
    yearly = 1.0 + 0.12 * np.sin(2 * np.pi * (doy - 100) / 365.25)
    yearly += 0.55 * np.exp(-0.5 * ((doy - 350) / 9.0) ** 2)
    mult = trend * weekly * yearly
    mult *= holiday_effect(days, country)
    return mult


def holiday_effect(days: pd.DatetimeIndex, country: str = "US") -> np.ndarray:
    cal = holidays.country_holidays(country, years=sorted(set(days.year)))
    effect = np.ones(len(days))
    index = {d.date(): i for i, d in enumerate(days)}
    for day, name in cal.items():
        i = index.get(day)
        if i is None:
            continue
        if "Christmas" in name:
            effect[i] = 0.15  # stores closed, a trickle online
        elif "Thanksgiving" in name:
            effect[i] = 0.6
            for offset, boost in ((1, 2.8), (2, 1.6), (4, 1.9)):  # Black Friday, Sat, Cyber Monday
                if i + offset < len(days):
                    effect[i + offset] = boost
        elif "New Year" in name:
            effect[i] = 0.5
        else:
            effect[i] = 1.25  # long-weekend shopping
    return effect
