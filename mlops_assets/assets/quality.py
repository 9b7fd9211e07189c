"""Silver: bronze lines routed to silver_transactions or quarantined_transactions, and the
per-day data_quality_report, all from one pass over the run's bronze partitions."""

import dagster as dg
import pandas as pd

from mlops_assets.assets._metadata import frame_metadata, md_table
from mlops_assets.assets.partitions import SINGLE_RUN, run_window, window_of
from mlops_assets.automation.jobs import AFTER_GATES
from mlops_assets.checks.gates import Gate
from mlops_assets.core import quality, schemas
from mlops_assets.core.schemas import PARTITION_COLUMN
from mlops_assets.settings import Settings

SILVER = "silver_transactions"
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


def _out(group: str, description: str) -> dg.AssetOut:
    return dg.AssetOut(
        group_name=group,
        kinds={"pandas", "duckdb"},
        is_required=False,
        metadata={"partition_expr": PARTITION_COLUMN, "schema": group},
        description=description,
        code_version="1",
        automation_condition=AFTER_GATES,
    )


def build_quality_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    window = window_of(settings)
    q = settings.quality

    @dg.multi_asset(
        name="split_transactions",
        outs={
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
        check_specs=[g.spec for g in GATES.values()],
        can_subset=False,
    )
    def split_transactions(
        context: dg.AssetExecutionContext, bronze_transactions: pd.DataFrame, bronze_products: pd.DataFrame
    ):
        bounds = window.bounds
        split = quality.split_transactions(
            bronze_transactions,
            bounds,
            now=pd.Timestamp.now(),
            catalog=bronze_products if len(bronze_products) else None,
            max_abs_quantity=q.max_abs_quantity,
            price_outlier_factor=q.price_outlier_factor,
        )
        summary = quality.run_summary(split.report)
        start, end = run_window(context)
        results = [
            _conservation(bronze_transactions, split),
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
        if not failed:
            yield from _outputs(split, summary)
        yield from results

    return [split_transactions]


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
