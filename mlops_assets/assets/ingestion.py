"""Bronze: the user's files as read per sources.yaml, renamed to the canonical schema, typed.

Each bronze asset audits what it read before publishing it (blocking gates in checks/), so a
renamed column or a price column of strings stops the run with the column and rule named and
leaves the warehouse as it was.
"""

import dagster as dg
import pandas as pd

from mlops_assets.assets._metadata import frame_metadata
from mlops_assets.assets.partitions import SINGLE_RUN, run_window, window_of
from mlops_assets.automation.freshness import source_freshness
from mlops_assets.checks.gates import Gate
from mlops_assets.core import ingestion, quality, schemas
from mlops_assets.core.schemas import PARTITION_COLUMN
from mlops_assets.settings import Settings

GROUP = "bronze"


def _gates(asset: str) -> tuple[Gate, Gate]:
    return (
        Gate(
            "matches_source_schema",
            asset,
            "Every column sources.yaml maps is present in the files and parses as its canonical type.",
        ),
        Gate(
            "null_rates_within_limits",
            asset,
            "No canonical column's null share exceeds its ceiling (quality.max_null_rate).",
        ),
    )


def read_and_audit(settings: Settings, name: str, gates: tuple[Gate, Gate]):
    """Read one source, type it, and run its source-level gates on what was read."""
    spec = settings.source(name)
    raw = ingestion.read_source(name, settings.files(name), spec.read, spec.columns, settings.data_dir)
    typed = ingestion.typed_frame(name, raw, spec.read.get("date_format"))
    schema_gate, null_gate = gates
    where = raw.file_label
    parse_schema = schemas.raw_schema(
        name, raw.mapped, raw.frame, typed, settings.quality.max_unparseable_share
    )
    ceilings = {c: settings.quality.null_ceiling(c) for c in raw.mapped if c not in raw.missing}
    results = [
        schema_gate.validate(parse_schema, raw.frame, where, spec.columns),
        null_gate.validate(schemas.null_rate_schema(ceilings), typed, where),
    ]
    return raw, typed, results


def source_metadata(raw: ingestion.RawSource, typed: pd.DataFrame, date_col: str) -> dict:
    dates = typed[date_col].dropna()
    return {
        "source_paths": ", ".join(str(p) for p in raw.files),
        "source_content_hash": raw.content_hash,
        "source_rows": len(raw.frame),
        "date_min": str(dates.min()) if len(dates) else "none",
        "date_max": str(dates.max()) if len(dates) else "none",
        "notes": "\n".join(raw.notes) or "none",
    }


def _publish(context, frame: pd.DataFrame, results: list[dg.AssetCheckResult], metadata: dict):
    """Yield the output only when every gate passed (write-audit-publish), then the results."""
    failed = [r for r in results if not r.passed]
    for r in failed:
        context.log.error(r.description)
    if not failed:
        yield dg.Output(frame, metadata={**metadata, **frame_metadata(frame)})
    yield from results


def build_bronze_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    window = window_of(settings)
    tx_gates = _gates("bronze_transactions")

    @dg.asset(
        name="bronze_transactions",
        group_name=GROUP,
        kinds={"pandas", "duckdb"},
        partitions_def=window.partitions,
        backfill_policy=SINGLE_RUN,
        metadata={"partition_expr": PARTITION_COLUMN, "schema": GROUP},
        check_specs=[g.spec for g in tx_gates],
        output_required=False,
        code_version="1",
        freshness_policy=source_freshness(settings),
    )
    def bronze_transactions(context: dg.AssetExecutionContext):
        """Order lines from sources.yaml `transactions`, canonical and typed, with lineage
        (source_file, source_row) and the partition day each line belongs to. Lines outside
        the window or with bad timestamps stay here (quarantined downstream), never dropped."""
        raw, typed, results = read_and_audit(settings, "transactions", tx_gates)
        typed[PARTITION_COLUMN] = quality.attribute_partitions(typed, window.bounds)
        start, end = run_window(context)
        in_run = (typed[PARTITION_COLUMN] >= start) & (typed[PARTITION_COLUMN] < end)
        frame = typed[in_run].reset_index(drop=True)
        pending = int((typed[PARTITION_COLUMN] >= window.bounds.end).sum())
        meta = {
            **source_metadata(raw, frame, "order_ts"),
            "rows_in_run_partitions": len(frame),
            "rows_in_other_partitions": len(typed) - len(frame) - pending,
            "rows_awaiting_partition": pending,  # days not complete yet (open-ended windows)
            "run_partitions": f"{start.date()} .. {(end - pd.Timedelta(days=1)).date()}",
        }
        yield from _publish(context, frame, results, meta)

    return [
        bronze_transactions,
        _reference_asset(settings, "products", "product_id"),
        _reference_asset(settings, "inventory", "snapshot_date"),
    ]


def _reference_asset(settings: Settings, name: str, date_col: str) -> dg.AssetsDefinition:
    asset = f"bronze_{name}"
    gates = _gates(asset)
    table_gate = Gate(
        f"{name}_values_valid",
        asset,
        "products: unique non-null product_id, positive price, non-negative rating"
        if name == "products"
        else "inventory: non-null date and product, on_hand >= 0",
    )
    table_schema = schemas.catalog_schema() if name == "products" else schemas.inventory_schema()
    description = f"The `{name}` source of sources.yaml, canonical and typed " + (
        "(the product catalog)." if name == "products" else "(weekly on-hand snapshots)."
    )

    @dg.asset(
        name=asset,
        group_name=GROUP,
        kinds={"pandas", "duckdb"},
        backfill_policy=SINGLE_RUN,
        metadata={"schema": GROUP},
        description=description,
        check_specs=[g.spec for g in (*gates, table_gate)],
        output_required=False,
        code_version="1",
        freshness_policy=source_freshness(settings),
    )
    def _asset(context: dg.AssetExecutionContext):
        if settings.source(name) is None:
            note = f"no '{name}' source in {settings.sources_file}: empty table, dependent features skipped"
            context.log.warning(note)
            empty = schemas.empty_frame(name)
            results = [g.result(True, f"skipped: {note}") for g in (*gates, table_gate)]
            yield from _publish(context, empty, results, {"notes": note})
            return
        raw, typed, results = read_and_audit(settings, name, gates)
        results.append(table_gate.validate(table_schema, typed, raw.file_label))
        yield from _publish(context, typed, results, source_metadata(raw, typed, date_col))

    return _asset
