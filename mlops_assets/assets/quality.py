"""Bronze, silver, quarantine and the data quality report of the order lines, published
together by one step (`ingest_transactions`): the files are read and typed (bronze), every line
routed to silver_transactions or quarantined_transactions, the per-day data_quality_report
computed, and every gate of both layers evaluated before any of the four tables is written.
A gate that blocks at either layer leaves all four as they were, so the published bronze is
always exactly published silver + quarantine."""

import dagster as dg
import pandas as pd

from mlops_assets.assets import transactions
from mlops_assets.assets._metadata import frame_metadata, only_selected, partitioned_metadata, table_metadata
from mlops_assets.assets.ingestion import tx_gates
from mlops_assets.assets.partitions import SINGLE_RUN, run_window, window_of
from mlops_assets.assets.transactions import SILVER
from mlops_assets.automation.freshness import source_freshness
from mlops_assets.automation.jobs import AFTER_GATES
from mlops_assets.checks.gates import blocks
from mlops_assets.core import publication, quality, warehouse
from mlops_assets.core.schemas import PARTITION_COLUMN
from mlops_assets.core.staging import month_of, months_between
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
        try:
            for r in run.results:
                if not r.passed:
                    (context.log.error if blocks(r) else context.log.warning)(r.description)
            if run.publishes:  # every gate of both layers passed: the selected tables, or none
                _check_partial(context, run, settings.warehouse_path)
                yield from _publish(context, run, settings.warehouse_path)
            yield from only_selected(context, run.results)
        finally:
            run.close()

    return [ingest_transactions]


TABLES = {  # output -> warehouse table
    "bronze_transactions": publication.TABLES["bronze"],
    SILVER: publication.TABLES["silver"],
    "quarantined_transactions": publication.TABLES["quarantined"],
    "data_quality_report": publication.TABLES["report"],
}
STAGED = {  # output -> its table in the run's stage
    "bronze_transactions": "bronze",
    SILVER: "silver",
    "quarantined_transactions": "quarantined",
    "data_quality_report": "report",
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
    changed: list[str] = []
    for first, end in months_between(run.start, run.end):  # a month at a time: bounded memory
        fresh = {TABLES[n]: run.stage.read(STAGED[n], month_of(first)) for n in left_out}
        changed += [t for t in publication.stale_tables(database, fresh, first, end) if t not in changed]
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


def _publish(context: dg.AssetExecutionContext, run: transactions.Ingested, database):
    """Write the selected tables from the run's stage, a partition range each, and say what
    was written (the IO manager is not involved: no table passes through one frame)."""
    by_output = context.assets_def.keys_by_output_name
    meta = _metadata(run)
    storage = "deltalake" if warehouse.is_delta(database) else "duckdb"
    for output, table in TABLES.items():
        key = by_output.get(output)  # a subset's definition holds only its selected outputs
        if key is None or key not in context.selected_asset_keys:
            continue
        staged = run.stage.files(STAGED[output])
        warehouse.replace_range(database, table, staged, PARTITION_COLUMN, run.start, run.end)
        rows = run.summary[f"{STAGED[output]}_rows"] if output != "data_quality_report" else len(run.report)
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={**meta[output], **_row_counts(context, rows), "dagster/storage_kind": storage},
        )


def _row_counts(context: dg.AssetExecutionContext, rows: int) -> dict:
    """As the IO manager says it (resources/warehouse.py): a range run's rows are the range's."""
    keys = context.partition_keys
    if len(keys) == 1:
        return {"dagster/partition_row_count": rows}
    return {"rows_in_run": rows, "partitions_in_run": len(keys), "run_range": f"{keys[0]}...{keys[-1]}"}


def _first(run: transactions.Ingested, name: str) -> tuple[pd.DataFrame, pd.Series]:
    """The first rows of a staged table (for the preview) and its rows per partition, read from
    the files' heads and footers, not their lines."""
    return run.stage.head(name), run.stage.row_counts(name)


def _metadata(run: transactions.Ingested) -> dict[str, dict]:
    summary, report, start, end = run.summary, run.report, run.start, run.end
    rules = report[[f"rule_{r}" for r in quality.RULES]].sum()
    rule_table = pd.DataFrame(
        {"rule": list(quality.RULES), "lines": rules.to_numpy(), "meaning": list(quality.RULES.values())}
    )
    nulls = report.filter(like="null_").mean().rename(lambda c: c[5:])
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
    silver, silver_counts = _first(run, "silver")
    quarantined, quarantined_counts = _first(run, "quarantined")
    return {
        "bronze_transactions": run.bronze_meta,
        SILVER: {
            **partitioned_metadata(silver, start, end, silver_counts),
            "silver_rows": summary["silver_rows"],
        },
        "quarantined_transactions": {
            **partitioned_metadata(quarantined, start, end, quarantined_counts),
            "quarantined_rows": summary["quarantined_rows"],
            "by_reason": table_metadata(rule_table[rule_table["lines"] > 0]),
        },
        "data_quality_report": {
            **{k: float(v) for k, v in summary.items()},
            **frame_metadata(report),
            "reconciliation": table_metadata(reconciliation),
            "counts_per_rule": table_metadata(rule_table),
            "null_rate_per_column": table_metadata(
                nulls.rename("null_rate").rename_axis("column").reset_index()
            ),
            "days": len(report),
        },
    }
