"""Checkpoints of the customers' running totals, so that a new day costs its own lines.

The customer features of an instant are read off every customer's running totals over the days
before it (core/customer_state.py). Summing a chain's history again for each run costs what the
history costs (48 s at 20M lines); the totals themselves are a row per customer. So the steps
that reach an instant leave its totals behind, as one Parquet file per instant beside the
warehouse (`.feature-state/customer-YYYYMMDD.parquet`, the latest few kept), stamped with the
digest of the inputs before that instant (core/input_digests.digests: the lines, the catalog, the
feature version). A later run resumes from the latest checkpoint whose digest still matches and
reduces only the days since it, and the days that left the 365-day window since it: the
totals are integers, so the features equal a computation over the whole history to the bit.
A changed line before the checkpoint changes its digest, and the run sums everything again.

The files are a cache, not a published table: deleting them costs one full computation.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import ibis
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlops_assets.core.customer_state import YEAR, CustomerState
from mlops_assets.core.input_digests import digests
from mlops_assets.core.line_features import DailyTables

FOLDER = ".feature-state"
KEEP = 3  # checkpoints kept: the latest instants (a re-run of an older month falls back to them)
DIGEST_KEY = b"inputs_digest"


def folder_of(database: str | Path) -> Path:
    """Where the checkpoints of a warehouse (a .duckdb file or a Delta folder) live."""
    return Path(database).parent / FOLDER


def _path(folder: Path, at: pd.Timestamp) -> Path:
    return folder / f"customer-{at:%Y%m%d}.parquet"


def saved(folder: Path) -> list[pd.Timestamp]:
    """The instants with a checkpoint, latest first."""
    found = []
    for p in folder.glob("customer-*.parquet"):
        try:
            found.append(pd.Timestamp(p.stem.removeprefix("customer-")))
        except ValueError:
            continue
    return sorted(found, reverse=True)


@dataclass
class Reached:
    state: CustomerState
    resumed_from: pd.Timestamp | None  # the checkpoint's instant; None: summed over all days
    digest: str  # the inputs' digest at the last instant asked for (what its checkpoint carries)

    def describe(self) -> str:
        if self.resumed_from is None:
            return "summed over every day of the lines (no checkpoint matched)"
        return f"resumed from the checkpoint of {self.resumed_from.date()} (inputs before it unchanged)"


def reach(
    lines: ibis.Table,
    products: pd.DataFrame | None,
    first: pd.Timestamp,
    last: pd.Timestamp | None = None,
    folder: Path | None = None,
    many: bool = False,
) -> Reached:
    """A customer state that can answer for the midnights from `first` to `last` (default:
    `first`), advanced to `first`: resumed from the latest checkpoint in `folder` at or before
    `first` whose inputs' digest matches the lines' now, with the reduced days of only the days
    after it (and those a year before them), else over all days. `many`: the day tables are
    staged in day order, for many instants."""
    first = pd.Timestamp(first)
    last = pd.Timestamp(last if last is not None else first)
    con = lines.get_backend()
    candidates = [at for at in saved(folder) if at <= first] if folder is not None else []
    *current, digest_last = digests(lines, products, None, "customer", [*candidates, last])
    for at, digest in zip(candidates, current, strict=True):
        table = _read(_path(folder, at), digest)
        if table is None:
            continue
        ranges = [(at - YEAR, last - YEAR), (at, last)]
        daily = DailyTables.build(con, lines, products, "customer", many=many, ranges=ranges)
        state = CustomerState.resume(table, daily, products)
        state.advance(first)
        return Reached(state, at, digest_last)
    state = CustomerState(DailyTables.build(con, lines, products, "customer", many=many), products)
    state.advance(first)
    return Reached(state, None, digest_last)


def _read(path: Path, digest: str) -> pa.Table | None:
    """The checkpoint at `path` when it was taken over inputs of this digest, else None."""
    try:
        meta = pq.read_schema(path).metadata or {}
        if meta.get(DIGEST_KEY, b"").decode() != digest:
            return None
        return pq.read_table(path)
    except (OSError, pa.ArrowInvalid):  # pruned by another step meanwhile, or half-written
        return None


def save(state: CustomerState, folder: Path, digest: str) -> Path:
    """Leave the state's totals as the checkpoint of its instant, `digest` being the inputs'
    digest at it (written whole, then renamed: a step reading meanwhile sees the old file or the
    new one), and keep the latest KEEP."""
    folder.mkdir(parents=True, exist_ok=True)
    table = state.to_arrow()
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), DIGEST_KEY: digest.encode()})
    path = _path(folder, state.at)
    partial = folder / f".{path.name}.{uuid.uuid4().hex[:8]}"
    pq.write_table(table, partial, compression="lz4")
    os.replace(partial, path)
    for old in saved(folder)[KEEP:]:
        _path(folder, old).unlink(missing_ok=True)
    return path
