"""The pandas implementations of the line-level steps as they were before they moved into the
engine (core/engine.py): the reference the engine's answers are held to (tests/test_line_engine.py:
the same rows, floats within 1e-9 relative). Kept verbatim but for names; not used by the package."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops_assets.core.clv import WEEK, fit_clv
from mlops_assets.core.series import DIMENSION, SeriesSet, calendar_features, complete_periods, period_start


def sales_series(
    transactions: pd.DataFrame,
    products: pd.DataFrame | None,
    freq: str,
    levels: list[str],
    start: pd.Timestamp,
    end_excl: pd.Timestamp,
    country: str = "US",
    week_ends: str = "SUN",
) -> SeriesSet:
    """Net revenue and units per complete period for each level; a level whose dimension is
    absent (one store "ALL", no catalog categories) is skipped with a note."""
    periods = complete_periods(pd.Timestamp(start), pd.Timestamp(end_excl), freq, week_ends)
    notes: list[str] = []
    lines = transactions[["order_ts", "product_id", "store_id", "quantity", "amount"]].copy()
    lines["period"] = period_start(lines["order_ts"], freq, week_ends)
    lines = lines[lines["period"].isin(periods)]
    if (
        products is not None
        and len(products)
        and "category" in products
        and products["category"].notna().any()
    ):
        catalog = products.dropna(subset=["category"]).drop_duplicates("product_id").set_index("product_id")
        lines["category"] = lines["product_id"].map(catalog["category"]).fillna("unknown")
    parts = []
    for level in levels:
        if level == "total":
            keys = pd.Series("total", index=lines.index)
        else:
            column = DIMENSION[level]
            if column not in lines or lines[column].nunique() <= 1:
                notes.append(f"level '{level}' skipped: {column} is absent or has a single value")
                continue
            keys = lines[column].astype(str)
        grouped = lines.groupby([keys.rename("key"), "period"])[["amount", "quantity"]].sum()
        for key in sorted(grouped.index.get_level_values("key").unique()):
            one = grouped.xs(key, level="key").reindex(periods, fill_value=0.0)
            series_id = "total" if level == "total" else f"{level}={key}"
            parts.append(
                pd.DataFrame(
                    {
                        "series_id": series_id,
                        "level": level,
                        "key": key,
                        "period": periods,
                        "revenue": one["amount"].to_numpy(dtype=float),
                        "units": one["quantity"].to_numpy(dtype=float),
                    }
                )
            )
    if not parts:
        return SeriesSet(
            pd.DataFrame(columns=["series_id", "level", "key", "period", "revenue", "units"]), notes
        )
    frame = pd.concat(parts, ignore_index=True).merge(calendar_features(periods, freq, country), on="period")
    notes.append("promotions: not in the canonical schema, so not used as a regressor")
    return SeriesSet(frame, notes)


def bottom_series(
    transactions: pd.DataFrame,
    products: pd.DataFrame | None,
    freq: str,
    end_excl: pd.Timestamp,
    week_ends: str = "SUN",
) -> tuple[pd.DataFrame, list[str]]:
    """The catalog's bottom series: net revenue per (product, store, complete period) with the
    product's category; only periods with lines (core/hierarchy.py zero-fills each series from
    its first sale). A product missing from the catalog file goes to category 'unknown'."""
    notes: list[str] = []
    columns = ["product_id", "store_id", "category", "period", "revenue"]
    if transactions.empty:
        return pd.DataFrame(columns=columns), ["no transactions: no catalog series"]
    lines = transactions[["order_ts", "product_id", "store_id", "amount"]].copy()
    lines["period"] = period_start(lines["order_ts"], freq, week_ends)
    complete = complete_periods(lines["period"].min(), pd.Timestamp(end_excl), freq, week_ends)
    lines = lines[lines["period"].isin(complete)]
    categories = pd.Series(dtype=object)
    if products is not None and len(products) and "category" in products:
        categories = products.dropna(subset=["category"]).drop_duplicates("product_id")
        categories = categories.set_index("product_id")["category"].astype(str)
    lines["category"] = lines["product_id"].map(categories).fillna("unknown")
    unknown = lines.loc[lines["category"] == "unknown", "product_id"].nunique()
    if unknown:
        notes.append(f"{unknown} products without a category in the products source: category 'unknown'")
    out = lines.groupby(["product_id", "store_id", "category", "period"], as_index=False, observed=True)
    out = out["amount"].sum().rename(columns={"amount": "revenue"})
    out[["product_id", "store_id", "category"]] = out[["product_id", "store_id", "category"]].astype(str)
    return out[columns], notes


def rfm_summary(
    transactions: pd.DataFrame, as_of: pd.Timestamp, days=None
) -> pd.DataFrame:
    """Per customer, from purchase lines strictly before as_of: x, t_x, T (weeks), m. `days`
    (the lines' purchase days, prepared once) answers in a few milliseconds for an as_of at
    midnight, which many snapshots ask for; the lines are grouped otherwise."""
    as_of = pd.Timestamp(as_of)
    if days is not None and as_of == as_of.floor("D"):
        return days.summary(as_of)
    lines = transactions[
        (transactions["order_ts"] < as_of)
        & (transactions["quantity"] > 0)
        & transactions["customer_id"].notna()
    ]
    daily = lines.groupby(
        [lines["customer_id"], lines["order_ts"].dt.floor("D").rename("day")], observed=True
    )["amount"].sum()
    daily = daily.reset_index().sort_values(["customer_id", "day"], kind="stable")
    per = daily.groupby("customer_id", sort=False, observed=True).agg(
        first=("day", "min"), last=("day", "max"), days=("day", "size"), revenue=("amount", "sum")
    )
    first_spend = daily.groupby("customer_id", sort=False, observed=True)["amount"].first()
    x = per["days"] - 1
    return pd.DataFrame(
        {
            "x": x.astype(float),
            "t_x": (per["last"] - per["first"]) / WEEK,
            "T": (as_of.floor("D") - per["first"]) / WEEK,
            "m": ((per["revenue"] - first_spend) / x.where(x > 0)).astype(float),
        }
    )


def validate_clv(transactions: pd.DataFrame, calibration_end: pd.Timestamp, holdout_days: int = 365) -> dict:
    """Fit on lines before `calibration_end`, predict the next `holdout_days` of gross revenue
    per calibration customer, and compare with the naive "next period = last period" guess."""
    summary = rfm_summary(transactions, calibration_end)
    model = fit_clv(summary)
    predicted = model.predict(summary, holdout_days)
    end = calibration_end + pd.Timedelta(days=holdout_days)
    start = calibration_end - pd.Timedelta(days=holdout_days)
    purchases = transactions[(transactions["quantity"] > 0) & transactions["customer_id"].notna()]
    ts = purchases["order_ts"]
    actual = purchases[(ts >= calibration_end) & (ts < end)].groupby("customer_id")["amount"].sum()
    naive = purchases[(ts >= start) & (ts < calibration_end)].groupby("customer_id")["amount"].sum()
    actual = actual.reindex(summary.index, fill_value=0.0)
    naive = naive.reindex(summary.index, fill_value=0.0)

    def errors(guess: pd.Series) -> dict[str, float]:
        diff = guess - actual
        return {
            "mae": float(diff.abs().mean()),
            "rmse": float(np.sqrt((diff**2).mean())),
            "total_error_pct": float(100 * (guess.sum() - actual.sum()) / max(actual.sum(), 1e-9)),
        }

    model_err, naive_err = errors(predicted), errors(naive)
    return {
        "calibration_end": calibration_end,
        "holdout_days": holdout_days,
        "customers": len(summary),
        "params": model.params(),
        "model": model_err,
        "naive": naive_err,
        "mae_ratio_vs_naive": model_err["mae"] / naive_err["mae"] if naive_err["mae"] else float("nan"),
    }
