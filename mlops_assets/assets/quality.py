"""Bronze, silver, quarantine and the data quality report of the order lines, published
together by one step (`ingest_transactions`): the files are read and typed (bronze), every line
routed to silver_transactions or quarantined_transactions, the per-day data_quality_report
computed, and every gate of both layers evaluated before any of the four tables is written.
A gate that blocks at either layer leaves all four as they were, so the published bronze is
always exactly published silver + quarantine."""

import dagster as dg
import pandas as pd

from mlops_assets.assets import transactions
from mlops_assets.assets._metadata import only_selected, partitioned_metadata, table_metadata
from mlops_assets.assets.ingestion import tx_gates
from mlops_assets.assets.partitions import SINGLE_RUN, run_window, window_of
from mlops_assets.assets.transactions import SILVER
from mlops_assets.automation.freshness import source_freshness
from mlops_assets.automation.jobs import AFTER_GATES
from mlops_assets.checks.gates import blocks
from mlops_assets.core import publication, quality
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
        **({"automation_condition": None} | more),
    )


# Ingestion starts from new_data_sensor and daily_monitoring_schedule (jobs.py), never from a
# condition: the source files are outside the graph. Quarantine and the quality report follow
# a run that published bronze and silver without them (a `*feature` selection).
FOLLOWS_BRONZE = AFTER_GATES


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
                automation_condition=FOLLOWS_BRONZE,
            ),
            "data_quality_report": _out(
                "quality",
                "Per day: bronze/silver/quarantined rows, counts per rule, duplicate "
                "rate, quarantine share and null rate per column.",
                automation_condition=FOLLOWS_BRONZE,
            ),
        },
        partitions_def=window.partitions,
        backfill_policy=SINGLE_RUN,
        check_specs=[g.spec for g in (*bronze_gates, transactions.COVERAGE, *transactions.GATES.values())],
        can_subset=True,
        # the lineage inside the step: silver and quarantine split bronze's lines (the catalog
        # decides unknown products), the report counts all three
        internal_asset_deps={
            "bronze_transactions": set(),
            SILVER: {dg.AssetKey("bronze_transactions"), dg.AssetKey("bronze_products")},
            "quarantined_transactions": {dg.AssetKey("bronze_transactions"), dg.AssetKey("bronze_products")},
            "data_quality_report": {
                dg.AssetKey("bronze_transactions"),
                dg.AssetKey(SILVER),
                dg.AssetKey("quarantined_transactions"),
            },
        },
    )
    def ingest_transactions(context: dg.AssetExecutionContext, bronze_products: pd.DataFrame):
        start, end = run_window(context)
        run = transactions.ingest(settings, window, start, end, bronze_products, bronze_gates)
        for r in run.results:
            if not r.passed:
                (context.log.error if blocks(r) else context.log.warning)(r.description)
        if run.publishes:  # every gate of both layers passed: the selected tables, or none
            _check_partial(context, run, settings.warehouse_path)
            bronze = dg.Output(run.bronze, output_name="bronze_transactions", metadata=run.bronze_meta)
            yield from only_selected(context, [bronze, *_outputs(run.split, run.summary, run.start, run.end)])
        yield from only_selected(context, run.results)

    return [ingest_transactions]


TABLES = {  # output -> warehouse table
    "bronze_transactions": publication.TABLES["bronze"],
    SILVER: publication.TABLES["silver"],
    "quarantined_transactions": publication.TABLES["quarantined"],
    "data_quality_report": publication.TABLES["report"],
}


def _check_partial(context: dg.AssetExecutionContext, run: transactions.Ingested, database) -> None:
    """A run that selected some of the four tables (`silver_transactions` alone, or `*feature`,
    which selects bronze and silver) splits the lines as always and runs every gate, and
    publishes its selection only when they all pass. The tables it leaves out are compared with
    what this split found for its days: when they differ (the files changed, or they were never
    published) the run says so in its log and in the selected tables' metadata
    (`left_out_stale`), and quarantine and the quality report, whose condition follows bronze,
    are brought up to date by automation_condition_sensor."""
    left_out = [name for name in TABLES if dg.AssetKey(name) not in context.selected_asset_keys]
    if not left_out:
        return
    fresh = {
        "bronze_transactions": run.bronze,
        SILVER: run.split.silver,
        "quarantined_transactions": run.split.quarantined,
        "data_quality_report": run.split.report,
    }
    changed = publication.stale_tables(
        database, {TABLES[n]: fresh[n] for n in left_out}, run.start, run.end
    )
    days = f"{run.start.date()}...{(run.end - pd.Timedelta(days=1)).date()}"
    if not changed:
        context.log.info(f"{left_out} left out of this run: they already hold what it found for {days}")
        return
    context.log.warning(
        f"{changed} left out of this run do not hold what the source files give for {days} (the "
        "files changed, or they were never published): automation_condition_sensor refreshes "
        "quarantine and the quality report; run ingest_job for these partitions to publish all four now"
    )
    for name in TABLES:
        if name not in left_out:
            context.add_output_metadata({"left_out_stale": ", ".join(changed)}, output_name=name)


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
            "by_reason": table_metadata(rule_table[rule_table["lines"] > 0]),
        },
    )
    yield dg.Output(
        split.report,
        output_name="data_quality_report",
        metadata={
            **{k: float(v) for k, v in summary.items()},
            "reconciliation": table_metadata(reconciliation),
            "counts_per_rule": table_metadata(rule_table),
            "null_rate_per_column": table_metadata(
                nulls.rename("null_rate").rename_axis("column").reset_index()
            ),
            "days": len(split.report),
        },
    )
