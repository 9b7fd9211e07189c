"""Any selection a user can type or click works (issue 16): single assets of a multi-asset,
`*asset`, `asset+`, groups. The multi-assets can be subset; a run of some of the ingestion
tables still runs every gate and says (and the automation brings up to date) what it left
out; a run of a training step's report alone registers no model."""

import os
import re
import subprocess
import sys

import dagster as dg
import pytest

from mlops_assets.definitions import build_definitions
from mlops_assets.settings import load_settings
from mlops_assets_tests.conftest import INGESTION, edit_sources, group_keys, read_table, run_graph

SELECTIONS = [
    "*sales_forecasts",
    "sales_forecasts+",
    "*forecast_performance",
    "silver_transactions",
    "silver_transactions+",
    "bronze_transactions+",
    "*data_quality_report",
    "customer_segmenter",
    "segmentation_report",
    "sales_anomalies",
    "forecast_backtest_report",
    "*customer_segments",
    "group:forecasting",
    "group:silver",
    "group:segmentation or group:anomalies",
    "*",
]


@pytest.mark.parametrize("selection", SELECTIONS)
def test_every_selection_builds_a_job(small_data_dir, selection):
    """What the CLI and the UI do with a selection before running it: resolve it and build the
    job subset (a non-subsettable multi-asset raised DagsterInvalidSubsetError here)."""
    defs = build_definitions(load_settings(small_data_dir))
    keys = dg.AssetSelection.from_string(selection).resolve(defs.resolve_asset_graph())
    assert keys
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=set(keys))
    assert set(job.asset_layer.executable_asset_keys) >= set(keys)


def test_bronze_and_silver_alone_publish_after_every_gate_and_say_what_they_left_out(small_data_dir):
    """What `*customer_features` selects of the ingestion: bronze and silver, not quarantine and
    the report."""
    defs = build_definitions(load_settings(small_data_dir))
    with dg.instance_for_test() as instance:
        catalog = [dg.AssetKey("bronze_products")]  # silver's other input
        assert run_graph(small_data_dir, "2023-01-01", "2023-03-31", instance, catalog).success
        before = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        layers = [dg.AssetKey("bronze_transactions"), dg.AssetKey("silver_transactions")]
        result = run_graph(small_data_dir, "2023-01-01", "2023-03-31", instance, layers)
        assert result.success
        published = {e.asset_key.path[0] for e in result.get_asset_materialization_events()}
        assert published == {"bronze_transactions", "silver_transactions"}
        checks = {e.asset_key.path[0] for e in result.get_asset_check_evaluations()}
        assert checks == published  # every gate of both ran; those of the two selected are reported
        for event in result.get_asset_materialization_events():
            stale = event.materialization.metadata["left_out_stale"].value
            assert stale == "silver.quarantined_transactions, quality.data_quality_report"  # never published
        assert len(read_table(small_data_dir, "silver.silver_transactions")) > 0
        # the automation completes the layers the run left out
        after = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=before.cursor)
        requested = {r.key.to_user_string() for r in after.results if r.true_subset.size > 0}
        assert {"quarantined_transactions", "data_quality_report"} <= requested

        # after a full ingestion, silver alone finds the others as it would write them
        ingest = group_keys(small_data_dir, *INGESTION)
        assert run_graph(small_data_dir, "2023-01-01", "2023-03-31", instance, ingest).success
        again = run_graph(
            small_data_dir, "2023-01-01", "2023-03-31", instance, [dg.AssetKey("silver_transactions")]
        )
        assert again.success
        meta = again.get_asset_materialization_events()[0].materialization.metadata
        assert "left_out_stale" not in meta


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_the_cli_runs_a_selection_through_two_multi_assets(small_data_dir, tmp_path, executor):
    """`dagster asset materialize --select '*customer_segments' --partition-range ...`: ingestion
    without quarantine and report, the features, and the segmenter without its report (both
    multi-assets subset); under the multiprocess executor each step in a process of its own."""
    edit_sources(small_data_dir, lambda s: s.update(executor=executor))
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "MLOPS_DATA_DIR": str(small_data_dir), "DAGSTER_HOME": str(home)}
    cmd = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "mlops_assets.definitions",
           "--select", "*customer_segments", "--partition-range", "2023-01...2023-03"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    segments = read_table(small_data_dir, "segmentation.customer_segments")
    assert len(segments) > 0 and (segments["model_version"] == "1").all()
    with pytest.raises(Exception, match="segmentation_report"):  # left out of the selection
        read_table(small_data_dir, "segmentation.segmentation_report")
    # the process id the log gives each step's start
    log = done.stdout + done.stderr
    pids = {step: pid for pid, step in re.findall(r" - (\d+) - (\w+) - STEP_START", log)}
    steps = {"ingest_transactions", "customer_features", "train_customer_segmenter", "customer_segments"}
    assert steps <= set(pids), pids
    assert len(set(pids.values())) == (len(pids) if executor == "multiprocess" else 1), pids
