"""Monitoring decisions, kept out of Dagster so they are tested with known inputs and a
controlled clock: what a drift report amounts to, segment-share drift, transaction columns
compared for drift, and which models are stale."""

from __future__ import annotations

from dataclasses import dataclass

import ibis
import numpy as np
import pandas as pd

from mlops_assets.core import engine
from mlops_assets.core.drift import DriftSettings, dataset_drift, is_numeric, psi, report_row

NONE, MODERATE, SIGNIFICANT = "none", "moderate", "significant"


# drift statistics on a uniform sample of at most this many lines of the window: a chain's 28
# days hold millions of lines, and KS / PSI / a domain classifier settle far below that
MAX_DRIFT_LINES = 500_000


def transaction_columns(
    lines: pd.DataFrame | ibis.Table, as_of: pd.Timestamp, days: int, max_lines: int = MAX_DRIFT_LINES
) -> pd.DataFrame:
    """The transaction-level columns drift is measured on, over the `days` up to `as_of`:
    quantity, unit price, line amount, store, product, hour of the order and guest/member.
    Selected in the engine; a window of more than `max_lines` lines comes back as a
    repeatable uniform sample of about that many."""
    start = pd.Timestamp(as_of) - pd.Timedelta(days=days)
    lines = engine.as_table(lines)
    window = lines.filter(
        (lines.order_ts > start.to_pydatetime()) & (lines.order_ts <= pd.Timestamp(as_of).to_pydatetime())
    )
    count = int(window.count().to_pyarrow().as_py())
    if count > max_lines:
        window = window.sample(max_lines / count, seed=0)
    cols = window.order_by(["order_ts", "order_id"]).select(
        quantity=window.quantity.cast("float64"),
        unit_price=window.unit_price.cast("float64"),
        amount=window.amount.cast("float64"),
        store_id=window.store_id,
        product_id=window.product_id,
        order_hour=window.order_ts.hour().cast("string"),
        customer_type=window.customer_id.isnull().ifelse("guest", "member"),
    )
    frame = engine.to_frame(cols)
    return frame.astype({"store_id": "string", "product_id": "string", "order_hour": "string"}).assign(
        customer_type=frame["customer_type"].to_numpy(dtype=object)
    )


def segment_shift(at_training: pd.Series, now: pd.Series, settings: DriftSettings) -> dict:
    """One drift-report row: PSI between the segment shares at training and now (segments
    keyed by id; a segment present on one side only counts with the PSI floor)."""
    ids = at_training.index.union(now.index)
    r = at_training.reindex(ids, fill_value=0).to_numpy(dtype=float)
    c = now.reindex(ids, fill_value=0).to_numpy(dtype=float)
    shift = psi(r / max(r.sum(), 1e-12), c / max(c.sum(), 1e-12))
    cut = settings.psi_significant
    return report_row("segment_share", "categorical", "psi", shift, np.nan, shift, cut, shift >= cut)


@dataclass(frozen=True)
class DriftVerdict:
    level: str  # none / moderate / significant
    reason: str
    drifted_columns: list[str]
    drifted_datasets: list[str]


def verdict(report: pd.DataFrame, settings: DriftSettings) -> DriftVerdict:
    """Significant when a dataset drifts (at least drift_share of its columns) or a column's
    PSI reaches psi_significant; moderate when any column drifts by its test or reaches
    psi_moderate; otherwise none. `report` has a `dataset` column beside drift_report's."""
    if report.empty:
        return DriftVerdict(NONE, "nothing to compare: no reference snapshot yet", [], [])
    drifted = report[report["drifted"]]
    columns = [f"{d}.{c}" for d, c in zip(drifted["dataset"], drifted["column"], strict=True)]
    shares = {name: dataset_drift(part, settings) for name, part in report.groupby("dataset")}
    datasets = [name for name, (drifts, _) in shares.items() if drifts]
    significant = report[report["psi"] >= settings.psi_significant]
    moderate = report[report["psi"] >= settings.psi_moderate]
    if datasets or len(significant):
        parts = [f"dataset {d} drifted ({shares[d][1]:.0%} of its columns)" for d in datasets]
        if len(significant):
            rows = significant[["dataset", "column", "psi"]].to_numpy()
            named = ", ".join(f"{d}.{c} ({p:.2f})" for d, c, p in rows)
            parts.append(f"PSI >= {settings.psi_significant:g} on {named}")
        return DriftVerdict(SIGNIFICANT, "significant drift: " + "; ".join(parts), columns, datasets)
    if len(drifted) or len(moderate):
        named = sorted(set(columns) | {f"{d}.{c}" for d, c in moderate[["dataset", "column"]].values})
        return DriftVerdict(MODERATE, "moderate drift on " + ", ".join(named), columns, [])
    return DriftVerdict(NONE, f"no drift on {len(report)} columns", [], [])


def stale_models(trained_at: dict[str, float | None], now: float, max_age_days: float) -> dict[str, str]:
    """Models whose last training (POSIX seconds; None = never) is older than max_age_days at
    `now`, each with the sentence a retrain is tagged with."""
    limit = max_age_days * 86_400
    out = {}
    for name, ts in trained_at.items():
        if ts is None:
            continue  # never trained: the build trains it, staleness does not apply
        age = now - ts
        if age > limit:
            out[name] = f"{name} last trained {age / 86_400:.1f} days ago (> {max_age_days:g} days)"
    return out


def feature_columns(table: pd.DataFrame, max_categories: int = 100) -> pd.DataFrame:
    """The columns of a feature table that drift is measured on: numbers, and categories with
    at most `max_categories` values; keys (`*_id`), timestamps and flags are left out."""
    keep = []
    for name in table.columns:
        col = table[name]
        skip = str(name).endswith("_id") or pd.api.types.is_datetime64_any_dtype(col)
        skip = skip or pd.api.types.is_bool_dtype(col)
        if not skip and (is_numeric(col) or col.nunique(dropna=True) <= max_categories):
            keep.append(name)
    return table[keep].reset_index(drop=True)
