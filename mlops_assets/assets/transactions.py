"""The order lines of a run, read, routed and judged, with no Dagster in sight: what
`ingest_transactions` publishes, or why it publishes nothing.

Bronze gates (files_readable, matches_source_schema, null_rates_within_limits) judge what was
read; when one blocks, silver is not judged on lines bronze refused. Then every line is routed
(core/quality.py), the days the files no longer cover are kept as published
(core/publication.py), and the silver gates judge the result. The step publishes the four
tables only when no gate blocked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg
import pandas as pd

from mlops_assets.assets.ingestion import bronze_lines
from mlops_assets.checks.gates import Gate, blocks
from mlops_assets.core import feed_checks, publication, quality, schemas
from mlops_assets.core.feed_checks import WEEKS
from mlops_assets.core.schemas import PARTITION_COLUMN
from mlops_assets.settings import Settings

SILVER = "silver_transactions"
WARN = dg.AssetCheckSeverity.WARN
COVERAGE = Gate(
    "feed_covers_published_days",
    "bronze_transactions",
    "A re-run's files cover every day of its months published before. A day they no longer "
    "cover keeps its published lines in all four tables (warns, naming the days); nothing "
    "published is lost to a shorter re-export.",
)
GATES = {
    "rows_conserved": Gate(
        "rows_conserved", SILVER, "Every bronze line of the run is in exactly one of silver or quarantine."
    ),
    "quarantine_share_within_limit": Gate(
        "quarantine_share_within_limit",
        SILVER,
        "The quarantined share stays under quality.max_quarantine_share: above it the upstream "
        "is corrupt, and the run stops instead of quietly quarantining it.",
    ),
    "returns_share_plausible": Gate(
        "returns_share_plausible",
        SILVER,
        "The share of lines with a negative quantity (returns) stays under "
        "quality.max_return_share: above it the signs look flipped, sales written negative.",
    ),
    "day_volumes_plausible": Gate(
        "day_volumes_plausible",
        SILVER,
        "No day of the run has fewer lines than quality.min_day_volume_ratio of the same weekday's "
        "median over the eight weeks before it (warns: a file cut short, a store not sent).",
    ),
    "silver_values_in_range": Gate(
        "silver_values_in_range",
        SILVER,
        "Silver lines have keys, a non-zero quantity within bounds, a positive price and a "
        "timestamp inside the window.",
    ),
}


@dataclass
class Ingested:
    start: pd.Timestamp  # the run's partitions: [start, end)
    end: pd.Timestamp
    bronze: pd.DataFrame
    bronze_meta: dict
    results: list[dg.AssetCheckResult]
    split: quality.Split | None = None
    summary: dict = field(default_factory=dict)

    @property
    def publishes(self) -> bool:
        return self.split is not None and not any(blocks(r) for r in self.results)


def ingest(
    settings: Settings, window, start: pd.Timestamp, end: pd.Timestamp, products: pd.DataFrame, bronze_gates
) -> Ingested:
    q = settings.quality
    bounds = window.bounds
    bronze, meta, bronze_results = bronze_lines(settings, window, start, end, bronze_gates)
    stopped = [r for r in bronze_results if blocks(r)]
    if stopped:  # silver is not judged on lines bronze refused
        skipped = COVERAGE.result(False, "not evaluated: a bronze gate blocked the run", severity=WARN)
        return Ingested(start, end, bronze, meta, [*bronze_results, skipped, *_not_evaluated(stopped)])
    earlier = None
    if q.detect_replays:
        earlier = publication.first_line_days(settings.warehouse_path, bronze["order_id"], start)
    split = quality.split_transactions(
        bronze,
        bounds,
        now=pd.Timestamp.now(),
        catalog=products if len(products) else None,
        max_abs_quantity=q.max_abs_quantity,
        price_outlier_factor=q.price_outlier_factor,
        earlier_orders=earlier,
        earlier_sales=_sales_before(settings, bronze, start),
        return_lookback_days=q.return_lookback_days,
    )
    kept = publication.uncovered_days(settings.warehouse_path, bronze, start, end)
    bronze, split = publication.with_kept(bronze, split, kept)
    summary = quality.run_summary(split.report)
    results = [
        *bronze_results,
        _coverage(kept, meta["source_files"]),
        _conservation(bronze, split),
        _quarantine_share(split, summary, q.max_quarantine_share),
        _returns(split, q.max_return_share),
        _volumes(settings, split, start, end),
        GATES["silver_values_in_range"].validate(
            schemas.silver_schema(bounds.start, bounds.end, q.max_abs_quantity),
            split.silver,
            f"{SILVER} {start.date()}..{(end - pd.Timedelta(days=1)).date()}",
        ),
    ]
    return Ingested(start, end, bronze, meta, results, split, summary)


def _coverage(kept: publication.Kept, files: str) -> dg.AssetCheckResult:
    if not kept.days:
        return COVERAGE.result(True, "the files cover every published day of the run's months")
    days = ", ".join(d.date().isoformat() for d in kept.days[:10]) + (" ..." if len(kept.days) > 10 else "")
    text = (
        f"the files read ({files}) no longer cover {len(kept.days)} published days of the run's "
        f"months: {days}; their {kept.lines:,} published lines are kept as they were"
    )
    meta = {"days_kept": len(kept.days), "lines_kept": kept.lines}
    return COVERAGE.result(False, text, meta, severity=WARN)


def _not_evaluated(stopped: list[dg.AssetCheckResult]) -> list[dg.AssetCheckResult]:
    why = ", ".join(r.check_name for r in stopped)
    return [
        g.result(False, f"{g.name} not evaluated: bronze gate {why} blocked the run", severity=WARN)
        for g in GATES.values()
    ]


def _sales_before(settings: Settings, bronze: pd.DataFrame, start: pd.Timestamp):
    days = settings.quality.return_lookback_days
    if days is None:
        return None
    since = start - pd.Timedelta(days=days + 1)
    return publication.published_sales(settings.warehouse_path, bronze["customer_id"], since, start)


def _returns(split: quality.Split, limit: float) -> dg.AssetCheckResult:
    gate = GATES["returns_share_plausible"]
    share = feed_checks.return_share(split.silver)
    meta = {"return_share": share, "limit": float(limit)}
    if share <= limit:
        return gate.result(True, f"{share:.1%} of the silver lines are returns (limit {limit:.0%})", meta)
    return gate.result(
        False,
        f"{share:.1%} of the run's silver lines have a negative quantity (returns), above "
        f"quality.max_return_share {limit:.0%}: the signs look flipped (sales written negative)",
        meta,
    )


def _volumes(settings: Settings, split: quality.Split, start: pd.Timestamp, end: pd.Timestamp):
    gate = GATES["day_volumes_plausible"]
    report = split.report
    run = report.set_index(pd.DatetimeIndex(report[PARTITION_COLUMN]))["bronze_rows"]
    before = publication.day_counts(settings.warehouse_path, start - pd.Timedelta(weeks=WEEKS), start)
    last = run.index.max() if len(run) else start - pd.Timedelta(days=1)
    judged = pd.date_range(start, min(end - pd.Timedelta(days=1), last), freq="D")
    counts = pd.concat([before, run]) if len(before) else run
    q = settings.quality
    low = feed_checks.low_volume_days(counts, judged, q.min_day_volume_ratio, q.min_day_volume_usual)
    meta = {"days_judged": len(judged), "low_days": len(low)}
    if low.empty:
        return gate.result(True, f"no day of {len(judged)} is far below its usual volume", meta)
    shown = "; ".join(
        f"{r.day.date()} has {r.lines} lines, {r.lines / r.usual:.0%} of its weekday's usual {r.usual:.0f}"
        for r in low.head(5).itertuples()
    )
    days = f"{len(low)} day{'s' * (len(low) != 1)}"
    text = f"{days} far below the usual volume of their weekday (quality.min_day_volume_ratio): {shown}"
    return gate.result(False, text, meta, severity=WARN)


def _conservation(bronze: pd.DataFrame, split: quality.Split) -> dg.AssetCheckResult:
    gate = GATES["rows_conserved"]
    overlap = quality.lines_in_both(split.silver, split.quarantined)
    balanced = len(bronze) == len(split.silver) + len(split.quarantined) and overlap == 0
    text = (
        f"bronze {len(bronze):,} = silver {len(split.silver):,} + quarantined {len(split.quarantined):,}"
        + ("" if balanced else f" does not hold ({overlap} lines in both)")
    )
    return gate.result(balanced, text, {"bronze_rows": len(bronze), "lines_in_both": overlap})


def _quarantine_share(split: quality.Split, summary: dict, limit: float) -> dg.AssetCheckResult:
    gate = GATES["quarantine_share_within_limit"]
    share = summary["quarantine_share"]
    top = split.quarantined["reason"].value_counts().head(3)
    worst = ", ".join(
        f"{rule} {n / max(1, summary['bronze_rows']):.1%} ({quality.RULES[rule]})" for rule, n in top.items()
    )
    ok = share <= limit
    text = (
        f"quarantine share {share:.2%} is within quality.max_quarantine_share {limit:.0%}"
        if ok
        else f"quarantine share {share:.2%} exceeds quality.max_quarantine_share {limit:.0%}: "
        f"the upstream looks corrupt; top rules: {worst}"
    )
    return gate.result(ok, text, {"quarantine_share": float(share), "limit": float(limit)})
