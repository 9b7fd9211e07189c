"""How a step over order lines gets them: not as a pandas frame loaded by the IO manager (a
chain's log does not fit in memory), but as an Ibis table over the published silver table, run
by core/engine.py out of core. The step depends on silver (its gates, lineage, automation)
without loading it (`dagster_type=Nothing`), and reads the warehouse itself."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import ibis

from mlops_assets.core import engine
from mlops_assets.settings import Settings

SILVER_IN = {"silver_transactions": dg.AssetIn(dagster_type=dg.Nothing)}


@contextmanager
def silver_lines(settings: Settings) -> Iterator[ibis.Table]:
    """The published silver lines as an Ibis table (empty before any were published). Use it
    inside the `with`: the read-only connection closes at its end, before the step's output is
    written."""
    with engine.connect(settings.warehouse_path) as con:
        yield engine.silver_or_empty(con)
