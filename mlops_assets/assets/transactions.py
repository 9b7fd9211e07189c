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

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import ibis
import pandas as pd
import pyarrow as pa

from mlops_assets.assets import bronze_lines
from mlops_assets.checks.gates import Gate, blocks
from mlops_assets.core import (
    engine,
    feed_checks,
    line_rules,
    publication,
    quality,
    schemas,
    staging,
    warehouse,
)
from mlops_assets.core.feed_checks import WEEKS
from mlops_assets.core.schemas import PARTITION_COLUMN
from mlops_assets.core.staging import Stage, month_of, months_between
from mlops_assets.settings import Settings

SILVER = "silver_transactions"
COVERAGE = Gate(
    "feed_covers_published_days",
    "bronze_transactions",
    "A re-run's files cover every day of its months published before. A day they no longer "
    "cover, or whose new lines are all quarantined (a day re-sent under another date), keeps its "
    "published lines in all four tables, beside the new quarantined ones (warns, naming the days); "
    "nothing published is lost to a shorter re-export or a bad resend.",
    warns=True,
)
GATES = {
    "rows_conserved": Gate(
        "rows_conserved",
        SILVER,
        "Every bronze line of the run is in exactly one of silver or quarantine.",
        remedy="nothing in the data: a line was lost or doubled by the platform; report it with the run id",
    ),
    "quarantine_share_within_limit": Gate(
        "quarantine_share_within_limit",
        SILVER,
        "The quarantined share stays under quality.max_quarantine_share: above it the upstream "
        "is corrupt, and the run stops instead of quietly quarantining it.",
        remedy="fix the export (quarantined_transactions gives each line's rule), "
        "or raise quality.max_quarantine_share",
    ),
    "returns_share_plausible": Gate(
        "returns_share_plausible",
        SILVER,
        "The share of lines with a negative quantity (returns) stays under "
        "quality.max_return_share: above it the signs look flipped, sales written negative.",
        remedy="check the sign of the quantity column in the export, or raise quality.max_return_share",
    ),
    "day_volumes_plausible": Gate(
        "day_volumes_plausible",
        SILVER,
        "No day of the run has fewer lines than quality.min_day_volume_ratio of the same weekday's "
        "median over the eight weeks before it (warns: a file cut short, a store not sent).",
        warns=True,
    ),
    "silver_values_in_range": Gate(
        "silver_values_in_range",
        SILVER,
        "Silver lines have keys, a non-zero quantity within bounds, a positive price and a "
        "timestamp inside the window.",
        remedy="nothing in the data: a line breaking a line rule reached silver; report it with the run id",
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
    first = stage.head("lines")
    counts = pd.Series({f"{m:%Y-%m}": n for m, n in stage.lines.items()}, dtype="int64")
    meta = bronze_lines.bronze_metadata(summary, audit, counts, first, start, end)
    stopped = [r for r in bronze_results if blocks(r)]
    if stopped:  # silver is not judged on lines bronze refused: its gates are not evaluated
        return Ingested(start, end, stage, meta, bronze_results)
    router = _Router(settings, window, start, stage, products)
    months = [router.route(a, b) for a, b in months_between(start, end)]
    report = pd.concat([m.report for m in months], ignore_index=True)
    run_summary = quality.run_summary(report)
    kept = publication.Kept([d for m in months for d in m.kept.days])
    kept.lines = sum(m.kept.lines for m in months)
    kept.refused = {d: n for m in months for d, n in m.kept.refused.items()}
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
    from the published tables and from the run's other months, by the rules of
    core/line_rules.py run as one query over the month's staged files (DuckDB, out of core)."""

    def __init__(self, settings: Settings, window, start: pd.Timestamp, stage: Stage, products: pd.DataFrame):
        self.settings, self.bounds, self.start, self.stage = settings, window.bounds, start, stage
        q = settings.quality
        self.rules = quality.rules_of(
            self.bounds,
            pd.Timestamp.now(),
            q.max_abs_quantity,
            q.price_outlier_factor,
            q.return_lookback_days,
        )
        self.ids, self.listed = quality.product_tables(products if len(products) else None)
        medians = stage.reference_prices()
        self.medians = pd.DataFrame(
            {"product_id": medians.index.astype(str), "median": medians.to_numpy(float)}
        )
        self._unplaced: pd.DataFrame | None = None
        self._staged = False

    def route(self, first: pd.Timestamp, end: pd.Timestamp) -> Month:
        month = month_of(first)
        with engine.memory_backend(self.stage.root / "spill") as con:
            lines = self._month_lines(con, month)
            routed = line_rules.reasons(lines, self.rules, self._context(con, month), list(quality.RULES))
            # sorted once into the run's order: the tables written from it keep that order
            # (DuckDB preserves insertion order in scans), instead of sorting bronze and silver each
            con.create_table("routed", routed.order_by(line_rules.SEQ))
            days = con.con.sql(
                f"select {PARTITION_COLUMN}, count(*), count(*) filter (where reason is null) "
                "from routed group by 1"
            ).fetchall()
            kept = publication.uncovered_days(
                self.settings.warehouse_path,
                [d for d, _, good in days if good],
                first,
                end,
                refused_days={d: n for d, n, good in days if not good},
            )
            if kept.days:  # a shorter re-export: the month joins the published days it keeps
                return self._with_kept(con, month, first, end, kept)
            return self._written(con, month, first, end, kept)

    def _month_lines(self, con, month: pd.Timestamp):
        """The month's staged lines with `_seq`, their place in the run (file order, then line order)."""
        files = [str(p) for p in self.stage.files("lines", month)]
        self._staged = bool(files)  # the view month_lines exists
        if not files:
            empty = self.stage.month_lines(month).assign(**{line_rules.SEQ: pd.Series(dtype="int64")})
            return ibis.memtable(staging.arrow_of(empty))
        listed = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
        con.con.execute(
            "create view month_lines as select * exclude (filename, file_row_number), "
            f"(list_position({listed}, filename)::bigint << 40) + file_row_number as {line_rules.SEQ} "
            f"from read_parquet({listed}, filename = true, file_row_number = true, union_by_name = true)"
        )
        return con.table("month_lines")

    def _context(self, con, month: pd.Timestamp) -> line_rules.Context:
        q = self.settings.quality
        ctx = line_rules.Context(
            catalog_ids=ibis.memtable(self.ids) if self.ids is not None else None,
            listed=ibis.memtable(self.listed) if self.listed is not None else None,
            medians=ibis.memtable(self.medians),
        )
        earlier = [
            str(p) for m in sorted(self.stage.lines) if m < month for p in self.stage.files("lines", m)
        ]
        run = con.read_parquet(earlier, union_by_name=True) if earlier else None
        month_ids = con.table("month_lines").order_id if self._staged else None
        if q.detect_replays:
            parts = [self._published_orders(con)]
            if run is not None and month_ids is not None:
                mine = run.filter(
                    (run.order_ts >= line_rules.timestamp(self.bounds.start))
                    & (run.order_ts < line_rules.timestamp(self.bounds.end))
                    & run.order_id.isin(month_ids)
                )
                parts.append(mine.select(*line_rules.REPLAY_KEY, first_day=mine.order_ts.truncate("D")))
            none = ibis.memtable(quality.earlier_orders_table(pd.DataFrame()))  # the rule stays on
            ctx.earlier_orders = _union([p for p in parts if p is not None] or [none])
        if q.return_lookback_days is not None:
            since = month - pd.Timedelta(days=q.return_lookback_days + 1)
            parts = [self._published_sales(con, since)]
            if run is not None:
                sold = run.filter(
                    (run.quantity > 0)
                    & (run.order_ts >= line_rules.timestamp(since))
                    & (run.order_ts < line_rules.timestamp(month))
                )
                parts.append(sold.select("customer_id", "product_id", "order_ts"))
            ctx.earlier_sales = _union([p for p in parts if p is not None])
        return ctx

    def _published_orders(self, con):
        """Lines published before the run for the month's order ids (REPLAY_KEY, first_day)."""
        if not self._staged:
            return None
        ids = con.con.sql("select distinct order_id from month_lines where order_id is not null").df()
        found = publication.first_line_days(self.settings.warehouse_path, ids["order_id"], self.start)
        return ibis.memtable(quality.earlier_orders_table(found)) if len(found) else None

    def _published_sales(self, con, since: pd.Timestamp):
        if since >= self.start or not self._staged:
            return None
        who = con.con.sql("select distinct customer_id from month_lines where customer_id is not null").df()
        found = publication.published_sales(
            self.settings.warehouse_path, who["customer_id"], since, self.start
        )
        if found is None or not len(found):
            return None
        return ibis.memtable(quality.earlier_sales_table(found))

    def _written(self, con, month, first, end, kept) -> Month:
        """The month's four tables staged by the engine: lines in the run's order."""
        raw, seq = con.con, line_rules.SEQ
        paths = {name: self.stage.path(name, month) for name in ("bronze", "silver", "quarantined")}
        selects = {
            "bronze": f"select * exclude ({seq}, reason) from routed",
            "silver": f"select * exclude ({seq}, reason) from routed where reason is null",
            "quarantined": f"select * exclude ({seq}) from routed where reason is not null",
        }
        for name, select in selects.items():
            raw.execute(f"copy ({select}) to '{paths[name]}' (format parquet, compression lz4)")
            self.stage.register(name, month, paths[name])
        counts = quality.report_counts_of(con, con.table("routed"))
        report = quality.report_from_counts(counts)
        self.stage.write("report", month, report)
        bronze, silver, returns = raw.sql(
            "select count(*), count(*) filter (where reason is null), "
            "count(*) filter (where reason is null and quantity < 0) from routed"
        ).fetchall()[0]
        both = f"['{paths['silver']}', '{paths['quarantined']}']"
        overlap = raw.sql(
            f"select count(*) - count(distinct (source_file, source_row, {PARTITION_COLUMN})) "
            f"from read_parquet({both}, union_by_name = true)"
        ).fetchall()[0][0]
        return Month(
            bronze=bronze,
            silver=silver,
            quarantined=bronze - silver,
            overlap=int(overlap),
            returns=returns,
            report=report,
            kept=kept,
            values=self._values(paths["silver"], first, end),
        )

    def _values(self, silver: Path, first: pd.Timestamp, end: pd.Timestamp) -> dg.AssetCheckResult:
        """silver_values_in_range over the month's silver lines, a million at a time."""
        q = self.settings.quality
        where = f"{SILVER} {first.date()}..{(end - pd.Timedelta(days=1)).date()}"
        schema = schemas.silver_schema(self.bounds.start, self.bounds.end, q.max_abs_quantity)
        return GATES["silver_values_in_range"].validate_batches(schema, _batches(silver), where)

    def _with_kept(self, con, month, first, end, kept) -> Month:
        """The month with the published days it keeps (core/publication.py), in pandas: a
        re-export shorter than what was published is rare and its month small."""
        seq = line_rules.SEQ
        routed = warehouse.to_pandas(con.con.sql(f"select * from routed order by {seq}").to_arrow_table())
        reason = routed.pop("reason").astype(object).where(lambda r: r.notna(), None)
        bronze = routed.drop(columns=[seq])
        split = quality.split_by_reason(bronze, reason)
        if self._unplaced is None:
            self._unplaced = self.stage.unplaced_lines(self.bounds)
        bronze, split = publication.with_kept(bronze, split, kept, self._unplaced)
        for name, frame in (("bronze", bronze), ("silver", split.silver),
                            ("quarantined", split.quarantined), ("report", split.report)):  # fmt: skip
            self.stage.write(name, month, frame)
        where = f"{SILVER} {first.date()}..{(end - pd.Timedelta(days=1)).date()}"
        q = self.settings.quality
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


def _union(parts: list):
    if not parts:
        return None
    out = parts[0]
    for part in parts[1:]:
        out = out.union(
            part.select(*[part[c].cast(out[c].type()).name(c) for c in out.columns]), distinct=False
        )
    return out


def _batches(path: Path, rows: int = 1_000_000) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
        yield warehouse.to_pandas(pa.Table.from_batches([batch]))


def _coverage(kept: publication.Kept, files: str) -> dg.AssetCheckResult:
    if not kept.days:
        return COVERAGE.result(True, "the files cover every published day of the run's months")
    missing = [d for d in kept.days if d not in kept.refused]
    sentences = []
    if missing:
        sentences.append(
            f"the files read ({files}) no longer cover {len(missing)} published days of the run's "
            f"months: {_days(missing)}"
        )
    if kept.refused:
        sentences.append(
            f"every new line of {len(kept.refused)} published days was quarantined "
            f"({sum(kept.refused.values()):,} lines, in quarantined_transactions): "
            f"{_days(list(kept.refused))}"
        )
    text = "; ".join(sentences) + f"; their {kept.lines:,} published lines are kept as they were"
    meta = {"days_kept": len(kept.days), "lines_kept": kept.lines, "days_refused": len(kept.refused)}
    return COVERAGE.result(False, text, meta)


def _days(days: list[pd.Timestamp]) -> str:
    return ", ".join(d.date().isoformat() for d in days[:10]) + (" ..." if len(days) > 10 else "")


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
    return gate.result(False, text, meta)


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
