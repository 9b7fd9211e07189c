"""Bronze: the user's files as read per sources.yaml, renamed to the canonical schema, typed.

Each bronze asset audits what it read before publishing it (blocking gates in checks/), so a
renamed column or a price column of strings stops the run with the column and rule named and
leaves the warehouse as it was.
"""

import dagster as dg
import pandas as pd

from mlops_assets.assets._metadata import frame_metadata
from mlops_assets.assets.partitions import SINGLE_RUN
from mlops_assets.automation.freshness import source_freshness
from mlops_assets.checks.gates import Gate
from mlops_assets.core import ingestion, schemas
from mlops_assets.settings import Settings

GROUP = "bronze"


def _gates(asset: str) -> tuple[Gate, Gate, Gate]:
    return (
        Gate(
            "files_readable",
            asset,
            "Every source file exists, decompresses, is text in the configured encoding, split by the "
            "configured delimiter, with a header and data lines; a reference source (products, "
            "inventory) also has no line that cannot be read, having no quarantine.",
            remedy="fix or replace the named file, or set its encoding and delimiter in sources.yaml",
        ),
        Gate(
            "matches_source_schema",
            asset,
            "Every column sources.yaml maps is present in the files and parses as its canonical type.",
            remedy="correct the values in the file, or map the column to another file column "
            "(sources.yaml columns:) or set its format there",
        ),
        Gate(
            "null_rates_within_limits",
            asset,
            "No canonical column's null share exceeds its ceiling (quality.max_null_rate).",
            remedy="send the column filled, map it to another file column in sources.yaml, "
            "or raise its ceiling (quality.max_null_rate)",
        ),
    )


def read_and_audit(settings: Settings, name: str, gates: tuple[Gate, Gate, Gate]):
    """Read one source, type it, and run its source-level gates on what was read; the
    transactions then get a row per unreadable line (bound for quarantine)."""
    spec = settings.source(name)
    raw = ingestion.read_source(name, settings.files(name), spec.read, spec.columns, settings.data_dir)
    typed = ingestion.typed_frame(name, raw, spec.read.get("date_format"))
    files_gate, schema_gate, null_gate = gates
    where = raw.file_label
    parse_schema = schemas.raw_schema(
        name, raw.mapped, raw.frame, typed, settings.quality.max_unparseable_share
    )
    ceilings = {c: settings.quality.null_ceiling(c) for c in raw.mapped if c not in raw.missing}
    results = [
        files_result(files_gate, raw, quarantined=name == "transactions"),
        schema_gate.validate(parse_schema, raw.frame, where, spec.columns),
        null_gate.validate(schemas.null_rate_schema(ceilings), typed, where),
    ]
    if raw.faults and len(raw.faults) == len(raw.files):  # nothing read: nothing to judge
        results[1:] = [
            g.result(False, f"{g.name} not evaluated: no source file could be read") for g in gates[1:]
        ]
    if name == "transactions":
        typed = ingestion.with_bad_lines(typed, raw)
    return raw, typed, results


def files_result(gate: Gate, raw: ingestion.RawSource, quarantined: bool, bad_lines: int | None = None):
    """Fails naming each unreadable file and its problem in a sentence; for a source without a
    quarantine, also naming the first lines that could not be read. `bad_lines`: their count,
    when the lines were read a file at a time and are not in `raw`."""
    problems = [f"{label} {why}" for label, why in raw.faults.items()]
    problems += [f"{raw.file_label}: {why}" for why in raw.column_faults]
    bad = raw.bad_lines
    count = len(bad) if bad_lines is None else bad_lines
    if not quarantined and len(bad):
        shown = bad.head(3)
        problems += [
            f"{f} line {r} {why}: {text[:80]!r}"
            for f, r, why, text in zip(shown["source_file"], shown["source_row"], shown["read_fault"],
                                       shown["raw_line"], strict=True)
        ] + ([f"{len(bad) - 3} more unreadable lines"] if len(bad) > 3 else [])  # fmt: skip
    meta = {"files": len(raw.files), "unreadable_files": len(raw.faults), "unreadable_lines": count}
    if problems:
        return gate.result(False, f"{gate.name} failed: " + "; ".join(problems), meta)
    note = f", {count} unreadable lines quarantined" if count else ""
    return gate.result(True, f"{gate.name} passed on {raw.file_label} ({len(raw.files)} files{note})", meta)


def source_metadata(raw: ingestion.RawSource, typed: pd.DataFrame, date_col: str) -> dict:
    dates = typed[date_col].dropna()
    return {
        "source_paths": ", ".join(str(p) for p in raw.files),
        "source_files": raw.file_label,
        "source_content_hash": raw.content_hash,
        "source_rows": len(raw.frame) + len(raw.bad_lines),
        "unreadable_lines": len(raw.bad_lines),
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


def tx_gates() -> tuple[Gate, Gate, Gate]:
    return _gates("bronze_transactions")


def build_bronze_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    """The reference sources; the order lines are published with silver (assets/quality.py)."""
    return [
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
