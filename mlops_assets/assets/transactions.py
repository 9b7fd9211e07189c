"""The order lines of a run, read, routed and judged, with no Dagster in sight: what
`ingest_transactions` publishes, or why it publishes nothing.

The files are read one at a time into the run's stage (assets/bronze_lines.py,
core/staging.py), and the bronze gates (files_readable, matches_source_schema,
null_rates_within_limits) judge what was read; when one blocks, silver is not judged on lines
bronze refused. Then a month at a time, every line is routed (core/quality.py), the days the
files no longer cover are kept as published (core/publication.py), and the month's four tables
are staged. The silver gates judge the months' counts. The step publishes the four tables only
when no gate blocked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg
import pandas as pd

from mlops_assets.assets import bronze_lines
from mlops_assets.checks.gates import Gate, blocks
from mlops_assets.core import feed_checks, publication, quality, schemas
from mlops_assets.core.feed_checks import WEEKS
from mlops_assets.core.schemas import PARTITION_COLUMN
from mlops_assets.core.staging import Stage, month_of, months_between
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
class Month:
    """What routing one month gave: its counts for the gates (its tables are staged)."""

    bronze: int
    silver: int
    quarantined: int
    overlap: int
    returns: int
    report: pd.DataFrame
    kept: publication.Kept
    values: dg.AssetCheckResult


@dataclass
class Ingested:
    start: pd.Timestamp  # the run's partitions: [start, end)
    end: pd.Timestamp
    stage: Stage  # the staged lines and, once routed, the four tables a month at a time
    bronze_meta: dict
    results: list[dg.AssetCheckResult]
    report: pd.DataFrame | None = None  # per day: small
    summary: dict = field(default_factory=dict)

    @property
    def publishes(self) -> bool:
        return self.report is not None and not any(blocks(r) for r in self.results)

    def table(self, name: str) -> pd.DataFrame:
        """One of the staged tables (bronze, silver, quarantined, report) over the whole run, in
        one frame: for tests and small runs; publication streams the staged files."""
        frames = [f for _, f in self.stage.frames(name)]
        if name == "lines":
            frames = [self.stage.month_lines(m) for m in sorted(self.stage.lines)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    @property
    def bronze(self) -> pd.DataFrame:
        return self.table("bronze" if self.report is not None else "lines")

    @property
    def split(self) -> quality.Split:
        return quality.Split(self.table("silver"), self.table("quarantined"), self.report)

    def close(self) -> None:
        self.stage.close()


def ingest(
    settings: Settings, window, start: pd.Timestamp, end: pd.Timestamp, products: pd.DataFrame, bronze_gates
) -> Ingested:
    """Stage the run's lines a file at a time, judge bronze, then route a month at a time."""
    stage = Stage.beside(settings.data_dir)
    try:
        return _ingest(settings, window, start, end, products, bronze_gates, stage)
    except BaseException:
        stage.close()
        raise


def _ingest(settings, window, start, end, products, bronze_gates, stage: Stage) -> Ingested:
    summary, audit = bronze_lines.stage_lines(settings, window, start, end, stage)
    bronze_results = bronze_lines.audit_results(settings, summary, audit, bronze_gates)
    first = stage.month_lines(min(stage.lines)) if stage.lines else stage.month_lines(month_of(start))
    counts = pd.Series({f"{m:%Y-%m}": n for m, n in stage.lines.items()}, dtype="int64")
    meta = bronze_lines.bronze_metadata(summary, audit, counts, first, start, end)
    stopped = [r for r in bronze_results if blocks(r)]
    if stopped:  # silver is not judged on lines bronze refused
        skipped = COVERAGE.result(False, "not evaluated: a bronze gate blocked the run", severity=WARN)
        return Ingested(start, end, stage, meta, [*bronze_results, skipped, *_not_evaluated(stopped)])
    router = _Router(settings, window, start, stage, products)
    months = [router.route(a, b) for a, b in months_between(start, end)]
    report = pd.concat([m.report for m in months], ignore_index=True)
    run_summary = quality.run_summary(report)
    kept = publication.Kept([d for m in months for d in m.kept.days])
    kept.lines = sum(m.kept.lines for m in months)
    results = [
        *bronze_results,
        _coverage(kept, meta["source_files"]),
        _conservation(months),
        _quarantine_share(report, run_summary, settings.quality.max_quarantine_share),
        _returns(months, settings.quality.max_return_share),
        _volumes(settings, report, start, end),
        _values(months, start, end),
    ]
    return Ingested(start, end, stage, meta, results, report, run_summary)


class _Router:
    """Routes the run's months one at a time: each month's lines, with what its rules need
    from the published tables and from the run's other months."""

    def __init__(self, settings: Settings, window, start: pd.Timestamp, stage: Stage, products: pd.DataFrame):
        self.settings, self.bounds, self.start, self.stage = settings, window.bounds, start, stage
        self.catalog = products if len(products) else None
        self.medians = stage.reference_prices()
        self.now = pd.Timestamp.now()
        self._unplaced: pd.DataFrame | None = None

    def route(self, first: pd.Timestamp, end: pd.Timestamp) -> Month:
        q, db, month = self.settings.quality, self.settings.warehouse_path, month_of(first)
        bronze = self.stage.month_lines(month)
        split = quality.split_transactions(
            bronze,
            self.bounds,
            now=self.now,
            catalog=self.catalog,
            max_abs_quantity=q.max_abs_quantity,
            price_outlier_factor=q.price_outlier_factor,
            earlier_orders=self._earlier_orders(month, bronze) if q.detect_replays else None,
            earlier_sales=self._earlier_sales(month, bronze),
            return_lookback_days=q.return_lookback_days,
            reference_prices=self.medians,
        )
        kept = publication.uncovered_days(db, bronze, first, end)
        if kept.days and self._unplaced is None:
            self._unplaced = self.stage.unplaced_lines(self.bounds)
        bronze, split = publication.with_kept(bronze, split, kept, self._unplaced)
        for name, frame in (("bronze", bronze), ("silver", split.silver),
                            ("quarantined", split.quarantined), ("report", split.report)):  # fmt: skip
            self.stage.write(name, month, frame)
        where = f"{SILVER} {first.date()}..{(end - pd.Timedelta(days=1)).date()}"
        schema = schemas.silver_schema(self.bounds.start, self.bounds.end, q.max_abs_quantity)
        return Month(
            bronze=len(bronze),
            silver=len(split.silver),
            quarantined=len(split.quarantined),
            overlap=quality.lines_in_both(split.silver, split.quarantined),
            returns=int((split.silver["quantity"] < 0).sum()),
            report=split.report,
            kept=kept,
            values=GATES["silver_values_in_range"].validate(schema, split.silver, where),
        )

    def _earlier_orders(self, month: pd.Timestamp, bronze: pd.DataFrame) -> pd.DataFrame:
        published = publication.first_line_days(self.settings.warehouse_path, bronze["order_id"], self.start)
        staged = self.stage.earlier_orders(month, bronze, self.bounds)
        parts = [f for f in (published, staged) if len(f)]
        return pd.concat(parts, ignore_index=True) if parts else published

    def _earlier_sales(self, month: pd.Timestamp, bronze: pd.DataFrame) -> pd.DataFrame | None:
        days = self.settings.quality.return_lookback_days
        if days is None:
            return None
        since = month - pd.Timedelta(days=days + 1)
        parts = [self.stage.earlier_sales(month, bronze, since)]
        if since < self.start:
            published = publication.published_sales(
                self.settings.warehouse_path, bronze["customer_id"], since, self.start
            )
            if published is not None and len(published):
                parts.append(published[["customer_id", "product_id", "order_ts"]])
        both = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
        return both.astype({"order_ts": "datetime64[ns]"})


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


def _returns(months: list[Month], limit: float) -> dg.AssetCheckResult:
    gate = GATES["returns_share_plausible"]
    silver = sum(m.silver for m in months)
    share = sum(m.returns for m in months) / silver if silver else 0.0
    meta = {"return_share": share, "limit": float(limit)}
    if share <= limit:
        return gate.result(True, f"{share:.1%} of the silver lines are returns (limit {limit:.0%})", meta)
    return gate.result(
        False,
        f"{share:.1%} of the run's silver lines have a negative quantity (returns), above "
        f"quality.max_return_share {limit:.0%}: the signs look flipped (sales written negative)",
        meta,
    )


def _volumes(settings: Settings, report: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp):
    gate = GATES["day_volumes_plausible"]
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


def _conservation(months: list[Month]) -> dg.AssetCheckResult:
    gate = GATES["rows_conserved"]
    bronze, silver = sum(m.bronze for m in months), sum(m.silver for m in months)
    quarantined, overlap = sum(m.quarantined for m in months), sum(m.overlap for m in months)
    balanced = bronze == silver + quarantined and overlap == 0
    text = f"bronze {bronze:,} = silver {silver:,} + quarantined {quarantined:,}" + (
        "" if balanced else f" does not hold ({overlap} lines in both)"
    )
    return gate.result(balanced, text, {"bronze_rows": bronze, "lines_in_both": overlap})


def _quarantine_share(report: pd.DataFrame, summary: dict, limit: float) -> dg.AssetCheckResult:
    gate = GATES["quarantine_share_within_limit"]
    share = summary["quarantine_share"]
    per_rule = pd.Series({r: int(report[f"rule_{r}"].sum()) for r in quality.RULES})
    top = per_rule[per_rule > 0].sort_values(ascending=False, kind="stable").head(3)
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


def _values(months: list[Month], start: pd.Timestamp, end: pd.Timestamp) -> dg.AssetCheckResult:
    """silver_values_in_range over the run: each month is validated; the failures are named."""
    failed = [m.values for m in months if not m.values.passed]
    if failed:
        return (
            failed[0]
            if len(failed) == 1
            else GATES["silver_values_in_range"].result(
                False, " | ".join(r.description for r in failed[:3]), {"failed_months": len(failed)}
            )
        )
    rows = sum(m.silver for m in months)
    where = f"{SILVER} {start.date()}..{(end - pd.Timedelta(days=1)).date()}"
    gate = GATES["silver_values_in_range"]
    return gate.result(True, f"{gate.name} passed on {where} ({rows:,} rows)", {"rows_checked": rows})
