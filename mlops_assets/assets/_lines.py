"""How a step over order lines gets them: not as a pandas frame loaded by the IO manager (a
chain's log does not fit in memory), but as an Ibis table over the published silver table, run
by core/engine.py out of core. The step depends on silver (its gates, lineage, automation)
without loading it (`dagster_type=Nothing`), and reads the warehouse itself."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import ibis

from mlops_assets.core import engine, schemas
from mlops_assets.core.schemas import PARTITION_COLUMN
from mlops_assets.settings import Settings

SILVER_IN = {"silver_transactions": dg.AssetIn(dagster_type=dg.Nothing)}


@contextmanager
def silver_lines(settings: Settings) -> Iterator[ibis.Table]:
    """The published silver lines as an Ibis table (empty before any were published). Use it
    inside the `with`: the read-only connection closes at its end, before the step's output is
    written."""
    if not settings.warehouse_path.exists():
        yield _no_lines()
        return
    with engine.connect(settings.warehouse_path) as con:
        lines = engine.silver(con)
        yield _no_lines() if lines is None else lines


def _no_lines() -> ibis.Table:
    empty = schemas.empty_frame("transactions")
    return engine.frame_lines(empty.assign(**{PARTITION_COLUMN: empty["order_ts"]}))
