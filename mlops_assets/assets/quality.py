"""Bronze, silver, quarantine and the data quality report of the order lines, published
together by one step (`ingest_transactions`): the files are read and typed (bronze), every line
routed to silver_transactions or quarantined_transactions, the per-day data_quality_report
computed, and every gate of both layers evaluated before any of the four tables is written.
A gate that blocks at either layer leaves all four as they were, so the published bronze is
always exactly published silver + quarantine."""

import dagster as dg
import pandas as pd

from mlops_assets.assets import transactions
from mlops_assets.assets._metadata import md_table, partitioned_metadata
from mlops_assets.assets.ingestion import tx_gates
from mlops_assets.assets.partitions import SINGLE_RUN, run_window, window_of
from mlops_assets.assets.transactions import SILVER
from mlops_assets.automation.freshness import source_freshness
from mlops_assets.checks.gates import blocks
from mlops_assets.core import quality
from mlops_assets.core.schemas import PARTITION_COLUMN
from mlops_assets.settings import Settings


def _out(group: str, description: str, **more) -> dg.AssetOut:
    return dg.AssetOut(
        group_name=group,
        kinds={"pandas", "duckdb"},
        is_required=False,
        metadata={"partition_expr": PARTITION_COLUMN, "schema": group},
        description=description,
        code_version="1",
        # ingestion starts from new_data_sensor and daily_monitoring_schedule (jobs.py), never
        # from a condition: the source files are outside the graph
        automation_condition=None,
        **more,
    )


def build_quality_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    window = window_of(settings)

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
        check_specs=[g.spec for g in (*bronze_gates, transactions.COVERAGE, *transactions.GATES.values())],
        can_subset=False,
    )
    def ingest_transactions(context: dg.AssetExecutionContext, bronze_products: pd.DataFrame):
        start, end = run_window(context)
        run = transactions.ingest(settings, window, start, end, bronze_products, bronze_gates)
        for r in run.results:
            if not r.passed:
                (context.log.error if blocks(r) else context.log.warning)(r.description)
        if run.publishes:  # all four tables, or none
            yield dg.Output(run.bronze, output_name="bronze_transactions", metadata=run.bronze_meta)
            yield from _outputs(run.split, run.summary, run.start, run.end)
        yield from run.results

    return [ingest_transactions]


def _outputs(split: quality.Split, summary: dict, start: pd.Timestamp, end: pd.Timestamp):
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
        metadata={**partitioned_metadata(split.silver, start, end), "silver_rows": summary["silver_rows"]},
    )
    yield dg.Output(
        split.quarantined,
        output_name="quarantined_transactions",
        metadata={
            **partitioned_metadata(split.quarantined, start, end),
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
