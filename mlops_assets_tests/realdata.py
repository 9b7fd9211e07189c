"""Real public data (fixtures/, see the README there) as the platform sees it: order
logs as canonical transaction lines, and sales series of different shapes with their frequency
and horizon. Shared by the tests and by bench/bench_realdata.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

FIXTURES = Path(__file__).parent / "fixtures"
HORIZON = {"D": 28, "W": 13}  # four weeks of days, a quarter of weeks


@dataclass(frozen=True)
class RealSeries:
    name: str
    shape: str  # what kind of real series it is
    freq: str
    y: pd.Series

    @property
    def horizon(self) -> int:
        return HORIZON[self.freq]


def cdnow_lines() -> pd.DataFrame:
    """CDNOW's order log (69,659 purchases of 23,570 customers) as canonical lines: one line
    per purchase, the dollar value as its amount."""
    raw = pd.read_csv(
        FIXTURES / "cdnow_master.txt.gz",
        sep=r"\s+",
        skiprows=1,  # its header line
        header=None,
        names=["customer_id", "date", "cds", "amount"],
        dtype={"customer_id": str, "date": str},
    )
    ts = pd.to_datetime(raw["date"], format="%Y%m%d")
    return pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(len(raw))],
            "order_ts": ts,
            "customer_id": raw["customer_id"].astype("string"),
            "product_id": "ALL",
            "store_id": "ALL",
            "quantity": raw["cds"].astype(float),
            "unit_price": (raw["amount"] / raw["cds"].where(raw["cds"] > 0)).fillna(0.0),
            "amount": raw["amount"].astype(float),
        }
    )


def bike_sales_lines() -> pd.DataFrame:
    raw = pd.read_csv(FIXTURES / "bike_sales_sample.csv", parse_dates=["order_date"])
    return pd.DataFrame(
        {
            "order_id": raw["order_id"].astype(str),
            "order_ts": raw["order_date"],
            "customer_id": raw["bikeshop_name"].astype("string"),
            "product_id": raw["model"].astype(str),
            "store_id": raw["state"].astype(str),
            "quantity": raw["quantity"].astype(float),
            "unit_price": raw["price"].astype(float),
            "amount": raw["total_price"].astype(float),
            "category": raw["category_1"].astype(str),
        }
    )


def _daily(lines: pd.DataFrame, name: str) -> pd.Series:
    days = lines.groupby(lines["order_ts"].dt.floor("D"))["amount"].sum()
    index = pd.date_range(days.index.min(), days.index.max(), freq="D")
    return days.reindex(index, fill_value=0.0).rename(name)


def _weekly(lines: pd.DataFrame, name: str) -> pd.Series:
    weeks = lines["order_ts"].dt.to_period("W-SUN").dt.start_time
    totals = lines.groupby(weeks)["amount"].sum()
    index = pd.date_range(totals.index.min(), totals.index.max(), freq="W-MON")
    return totals.reindex(index, fill_value=0.0).rename(name)


def _panel(path: Path, freq: str, last: int | None = None) -> dict[str, pd.Series]:
    frame = pd.read_csv(path, parse_dates=["date"])
    out = {}
    for sid, g in frame.groupby("id", sort=True):
        y = g.set_index("date")["value"].astype(float).sort_index()
        out[str(sid)] = (y.iloc[-last:] if last else y).rename(str(sid))
    return out


def real_series() -> list[RealSeries]:
    """Eighteen real series: spiky daily revenue of a decaying cohort (CDNOW), long daily series
    (M4 daily, the last two years of each; daily bike rentals), weekly department sales with
    holiday peaks (Walmart), weekly M4 series, and a wholesaler's weekly revenue in total and per
    product category (bike sales)."""
    out = [RealSeries("cdnow_daily_revenue", "spiky daily revenue, decaying cohort", "D", _daily(
        cdnow_lines(), "cdnow_daily_revenue"))]  # fmt: skip
    for sid, y in _panel(FIXTURES / "m4_daily.csv.gz", "D", last=730).items():
        out.append(RealSeries(f"m4_{sid}", "long daily series (M4)", "D", y))
    bikes = pd.read_csv(FIXTURES / "bike_sharing_daily.csv", parse_dates=["date"])
    out.append(RealSeries("bike_rentals_daily", "daily demand with yearly season", "D",
                          bikes.set_index("date")["value"].astype(float)))  # fmt: skip
    for sid, y in _panel(FIXTURES / "walmart_sales_weekly.csv", "W").items():
        y.index = y.index - pd.Timedelta(days=4)  # Friday-labelled weeks -> the Monday that starts them
        out.append(RealSeries(f"walmart_{sid}", "weekly department sales, holiday peaks", "W", y))
    for sid, y in _panel(FIXTURES / "m4_weekly.csv", "W").items():
        out.append(RealSeries(f"m4_{sid}", "weekly series (M4)", "W", y))
    lines = bike_sales_lines()
    out.append(RealSeries("bikes_weekly_revenue", "wholesale weekly revenue", "W",
                          _weekly(lines, "bikes_weekly_revenue")))  # fmt: skip
    for cat, part in lines.groupby("category"):
        y = _weekly(part, f"bikes_{cat}").reindex(out[-1].y.index, fill_value=0.0)
        out.append(RealSeries(f"bikes_{cat.lower()}_weekly", "wholesale weekly revenue per category", "W", y))
    return out


def geomean(values) -> float:
    v = np.asarray(list(values), dtype=float)
    return float(np.exp(np.log(np.clip(v, 1e-9, None)).mean()))


def daily_revenue_series() -> list[RealSeries]:
    """Real daily series for the anomaly detector: CDNOW's daily revenue in total and per
    acquisition cohort (customers by month of first purchase: each cohort decays), daily bike
    rentals, and the four M4 daily series (last two years)."""
    lines = cdnow_lines()
    out = [
        RealSeries("cdnow_daily_revenue", "spiky daily revenue, decaying cohort", "D", _daily(lines, "cdnow"))
    ]
    first = lines.groupby("customer_id")["order_ts"].transform("min").dt.to_period("M")
    for month, part in lines.groupby(first):
        y = _daily(part, f"cdnow_cohort_{month}")
        out.append(RealSeries(f"cdnow_cohort_{month}", "daily revenue of one acquisition cohort", "D", y))
    out += [s for s in real_series() if s.freq == "D" and not s.name.startswith("cdnow")]
    return out


def out_of_sample(plan_changes: dict | None = None, workers: int = 2, origins: int = 1) -> pd.DataFrame:
    """Per real series and forecast origin: a horizon held back, the whole forecasting procedure
    run on what came before, its forecast scored on the held-back periods (used neither to fit,
    to choose nor to calibrate): MASE relative to seasonal naive's on the same periods, band
    coverage. Origin 0 holds back the last horizon; origin k the horizon k horizons before it
    (the later periods unseen too)."""
    from mlops_assets.core import forecasting
    from mlops_assets.core.forecast_models import SeasonalNaive

    rows = []
    series = real_series()
    for origin in range(origins):
        for freq in ("D", "W"):
            group = [s for s in series if s.freq == freq]
            h = group[0].horizon
            ys = {s.name: s.y.iloc[: len(s.y) - origin * h] for s in group}
            plan = forecasting.ForecastPlan(freq=freq, horizon=h, **(plan_changes or {}))
            results = forecasting.forecast_all({k: y.iloc[:-h] for k, y in ys.items()}, plan, workers=workers)
            for s, r in zip(group, results, strict=True):
                y = ys[s.name]
                test = y.iloc[-h:].to_numpy()
                naive = SeasonalNaive(freq).fit(y.iloc[:-h]).predict(h).non_negative()
                f = r.future
                rows.append(
                    {
                        "series": s.name,
                        "origin": origin,
                        "chosen": r.chosen,
                        "shape": s.shape,
                        "relative_mase": np.abs(f.mean - test).mean() / np.abs(naive.mean - test).mean(),
                        "coverage80": np.mean((f.lower80 <= test) & (test <= f.upper80)),
                        "coverage95": np.mean((f.lower95 <= test) & (test <= f.upper95)),
                    }
                )
    return pd.DataFrame(rows)


def series_frame(values: dict[str, pd.Series]) -> pd.DataFrame:
    """Daily series as sales_series rows (one level), what the anomaly detector reads."""
    parts = [
        pd.DataFrame({"series_id": k, "level": "total", "period": v.index, "revenue": v.to_numpy()})
        for k, v in values.items()
    ]
    return pd.concat(parts, ignore_index=True)


def inject_anomalies(
    series: dict[str, pd.Series], own: dict[str, set], share: float, seed: int = 11
) -> tuple[dict[str, pd.Series], dict[str, set]]:
    """x3 spikes and x0.2 drops (half each) on `share` of each series' days, chosen among
    ordinary days: outside holiday windows, revenue above zero, not flagged as they are (`own`)."""
    from mlops_assets.core.anomalies import AnomalySpec, holiday_indicators

    rng = np.random.default_rng(seed)
    injected, truth = {}, {}
    for sid, y in series.items():
        holiday = holiday_indicators(y.index, AnomalySpec()).to_numpy().any(axis=1)
        ordinary = np.flatnonzero(~holiday & (y.to_numpy() > 0) & ~y.index.isin(list(own[sid])))
        days = rng.choice(ordinary, max(2, round(share * len(y))), replace=False)
        values = y.to_numpy().copy()
        values[days[: len(days) // 2]] *= 3
        values[days[len(days) // 2 :]] *= 0.2
        injected[sid], truth[sid] = pd.Series(values, index=y.index), set(y.index[days])
    return injected, truth


def injection_scores(scored: pd.DataFrame, truth: dict[str, set], own: dict[str, set]) -> dict[str, float]:
    """Recall of the injected days, and the share of the other days (neither injected nor
    flagged as they were) that the injection made the detector flag."""
    hits = total = new_false = others = 0
    for sid, g in scored.groupby("series_id"):
        flagged = set(g.loc[g["is_anomaly"], "period"])
        hits, total = hits + len(flagged & truth[sid]), total + len(truth[sid])
        new_false += len(flagged - truth[sid] - own[sid])
        others += len(g) - len(truth[sid]) - len(own[sid])
    return {"injected": total, "recall": hits / total, "false_share": new_false / others}
