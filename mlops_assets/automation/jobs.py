"""Jobs over the asset graph."""

from __future__ import annotations

import dagster as dg

# silver refreshes itself when bronze lands, but only if bronze's blocking gates passed
AFTER_GATES = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups("bronze", "silver", "quality"),
    description="Read the sources, split good lines from bad, report quality (a partition range per run).",
)
