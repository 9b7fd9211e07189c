"""Bronze, silver, quarantine and the data quality report of the order lines, published
together by one step (`ingest_transactions`): the files are read and typed (bronze), every line
routed to silver_transactions or quarantined_transactions, the per-day data_quality_report
computed, and every gate of both layers evaluated before any of the four tables is written.
A gate that blocks at either layer leaves all four as they were, so the published bronze is
always exactly published silver + quarantine."""

import dagster as dg
import pandas as pd

from mlops_assets.assets._metadata import frame_metadata, md_table
from mlops_assets.assets.ingestion import bronze_lines, tx_gates
from mlops_assets.assets.partitions import SINGLE_RUN, run_window, window_of
from mlops_assets.automation.freshness import source_freshness
from mlops_assets.automation.jobs import AFTER_GATES
from mlops_assets.checks.gates import Gate, blocks
from mlops_assets.core import publication, quality, schemas
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
    "silver_values_in_range": Gate(
        "silver_values_in_range",
        SILVER,
        "Silver lines have keys, a non-zero quantity within bounds, a positive price and a "
        "timestamp inside the window.",
    ),
}


def _out(group: str, description: str, **more) -> dg.AssetOut:
    return dg.AssetOut(
        group_name=group,
        kinds={"pandas", "duckdb"},
        is_required=False,
        metadata={"partition_expr": PARTITION_COLUMN, "schema": group},
        description=description,
        code_version="1",
        **({"automation_condition": AFTER_GATES} | more),
    )


def build_quality_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    window = window_of(settings)
    q = settings.quality

    bronze_gates = tx_gates()

    @dg.multi_asset(
        name="ingest_transactions",
        outs={
            "bronze_transactions": _out(
                "bronze",
                "Order lines from sources.yaml `transactions`, canonical and typed, with lineage "
                "(source_file, source_row) and the partition day each line belongs to; a record "
                "that could not be read is a row too (raw text in unparsed_values, why in "
                "read_fault). Lines outside the window or with bad timestamps stay here "
                "(quarantined in silver), never dropped.",
                automation_condition=None,
                freshness_policy=source_freshness(settings),
            ),
            SILVER: _out(
                "silver",
                "Valid order lines (returns included), one row per bronze line "
                "that passed every quarantine rule.",
            ),
            "quarantined_transactions": _out(
                "silver",
                "Bronze lines that broke a rule, with all their values and a `reason` "
                "(see core/quality.py RULES).",
            ),
            "data_quality_report": _out(
                "quality",
                "Per day: bronze/silver/quarantined rows, counts per rule, duplicate "
                "rate, quarantine share and null rate per column.",
            ),
        },
        partitions_def=window.partitions,
        backfill_policy=SINGLE_RUN,
        check_specs=[g.spec for g in (*bronze_gates, COVERAGE, *GATES.values())],
        can_subset=False,
    )
    def ingest_transactions(context: dg.AssetExecutionContext, bronze_products: pd.DataFrame):
        bounds = window.bounds
        start, end = run_window(context)
        bronze, bronze_meta, bronze_results = bronze_lines(settings, window, start, end, bronze_gates)
        stopped = [r for r in bronze_results if blocks(r)]
        if stopped:  # silver is not judged on lines bronze refused
            for r in stopped:
                context.log.error(r.description)
            yield from bronze_results
            yield COVERAGE.result(False, "not evaluated: a bronze gate blocked the run", severity=WARN)
            yield from _not_evaluated(stopped)
            return
        split = quality.split_transactions(
            bronze,
            bounds,
            now=pd.Timestamp.now(),
            catalog=bronze_products if len(bronze_products) else None,
            max_abs_quantity=q.max_abs_quantity,
            price_outlier_factor=q.price_outlier_factor,
        )
        kept = publication.uncovered_days(settings.warehouse_path, bronze, start, end)
        bronze, split = publication.with_kept(bronze, split, kept)
        bronze_results.append(_coverage(kept, bronze_meta["source_paths"]))
        if kept.days:
            context.log.warning(bronze_results[-1].description)
        summary = quality.run_summary(split.report)
        results = [
            _conservation(bronze, split),
            _quarantine_share(split, summary, q.max_quarantine_share),
            GATES["silver_values_in_range"].validate(
                schemas.silver_schema(bounds.start, bounds.end, q.max_abs_quantity),
                split.silver,
                f"{SILVER} {start.date()}..{(end - pd.Timedelta(days=1)).date()}",
            ),
        ]
        failed = [r for r in results if not r.passed]
        for r in failed:
            context.log.error(r.description)
        if not failed:  # all four tables, or none
            yield dg.Output(bronze, output_name="bronze_transactions", metadata=bronze_meta)
            yield from _outputs(split, summary)
        yield from bronze_results
        yield from results

    return [ingest_transactions]


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


def _outputs(split: quality.Split, summary: dict):
    rules = split.report[[f"rule_{r}" for r in quality.RULES]].sum()
    rule_table = pd.DataFrame(
        {"rule": list(quality.RULES), "lines": rules.to_numpy(), "meaning": list(quality.RULES.values())}
    )
    nulls = split.report.filter(like="null_").mean().rename(lambda c: c[5:])
    reconciliation = pd.DataFrame(
        [
            {
                "bronze": summary["bronze_rows"],
                "silver": summary["silver_rows"],
                "quarantined": summary["quarantined_rows"],
                "balanced": summary["bronze_rows"] == summary["silver_rows"] + summary["quarantined_rows"],
            }
        ]
    )
    yield dg.Output(
        split.silver,
        output_name=SILVER,
        metadata={**frame_metadata(split.silver), "silver_rows": summary["silver_rows"]},
    )
    yield dg.Output(
        split.quarantined,
        output_name="quarantined_transactions",
        metadata={
            **frame_metadata(split.quarantined),
            "quarantined_rows": summary["quarantined_rows"],
            "by_reason": md_table(rule_table[rule_table["lines"] > 0]),
        },
    )
    yield dg.Output(
        split.report,
        output_name="data_quality_report",
        metadata={
            **{k: float(v) for k, v in summary.items()},
            "reconciliation": md_table(reconciliation),
            "counts_per_rule": md_table(rule_table),
            "null_rate_per_column": md_table(nulls.rename("null_rate").rename_axis("column").reset_index()),
            "days": len(split.report),
        },
    )


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
