"""Segmentation and anomaly assets under Dagster: gates publish or hold back the segmenter,
customers are scored with the published one, anomalies land in the warehouse with plots."""


import dagster as dg
import pandas as pd

from mlops_assets.assets.anomalies import build_anomaly_assets
from mlops_assets.assets.segmentation import build_segmentation_assets
from mlops_assets.definitions import registry_resource, resources
from mlops_assets.settings import load_settings
from mlops_assets_tests.conftest import check_results, edit_sources, read_table
from mlops_assets_tests.stubs import upstream
from mlops_assets_tests.test_anomalies import DROPS, SPIKES, injected, seasonal, series_frame
from mlops_assets_tests.test_segmentation import customers


def materialize(data_dir, assets, selection=None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets,
        resources=resources(load_settings(data_dir)),
        instance=dg.DagsterInstance.ephemeral(),
        selection=selection,
        raise_on_error=False,
    )


def segmentation(data_dir, table: pd.DataFrame) -> list:
    return [
        upstream("customer_features", "features", table),
        *build_segmentation_assets(load_settings(data_dir)),
    ]


PURE_SILHOUETTE = {"silhouette_tolerance": 0.0, "k_min": 2}  # the three kinds, not a finer split


def test_segmenter_passes_gates_and_scores_every_customer(small_data_dir):
    edit_sources(small_data_dir, lambda s: s.update(segment=PURE_SILHOUETTE))
    table = customers()
    result = materialize(small_data_dir, segmentation(small_data_dir, table))
    assert result.success
    checks = check_results(result)
    assert {"silhouette_above_minimum", "no_tiny_segments", "segments_stable_under_resampling"} <= set(checks)
    assert all(checks[n].passed for n in ("silhouette_above_minimum", "no_tiny_segments"))
    # the registry's champion is the one copy of the model: what scored the customers
    registry = registry_resource(load_settings(small_data_dir))
    segmenter, version = registry.load("customer_segmenter")
    scored = read_table(small_data_dir, "segmentation.customer_segments")
    assert len(scored) == len(table) and scored["customer_id"].is_unique
    assert set(scored["segment_name"]) == {"champions", "lost", "new"}
    assert (scored["model_version"] == str(version.version)).all()
    expected = segmenter.assign(table).set_index("customer_id")
    assert (scored.set_index("customer_id").loc[expected.index, "segment_id"] == expected["segment_id"]).all()
    report = read_table(small_data_dir, "segmentation.segmentation_report")
    assert report["customers"].sum() == len(table) and {"share", "revenue_share"} <= set(report.columns)
    meta = result.asset_materializations_for_node("train_customer_segmenter")
    report_meta = next(m for m in meta if m.asset_key.path == ["segmentation_report"]).metadata
    assert report_meta["k_sweep_plot"].value.startswith("![k sweep](data:image/png;base64,")
    assert report_meta["silhouette"].value > 0.6


def test_a_segmenter_failing_its_gates_keeps_the_published_one(small_data_dir):
    edit_sources(small_data_dir, lambda s: s.update(segment=PURE_SILHOUETTE))
    table = customers()
    assert materialize(small_data_dir, segmentation(small_data_dir, table)).success
    registry = registry_resource(load_settings(small_data_dir))
    before = registry.champion("customer_segmenter").version
    segments_before = read_table(small_data_dir, "segmentation.customer_segments")

    edit_sources(small_data_dir, lambda s: s.update(segment={**PURE_SILHOUETTE, "min_silhouette": 0.95}))
    shifted = customers(seed=9)  # new customers arrive, but the new segmenter is not good enough
    result = materialize(small_data_dir, segmentation(small_data_dir, shifted))
    assert not result.success
    gate = check_results(result)["silhouette_above_minimum"]
    assert not gate.passed
    assert (
        "below segment.min_silhouette 0.95" in gate.description
        and "kmeans with 3 segments" in gate.description
    )
    # nothing registered, the champion stays
    assert registry.champion("customer_segmenter").version == before
    assert len(registry.client.search_model_versions("name='customer_segmenter'")) == 1
    after = read_table(small_data_dir, "segmentation.customer_segments")
    pd.testing.assert_frame_equal(after, segments_before)  # scoring did not run on a rejected model


def test_tiny_segments_block_the_segmenter(small_data_dir):
    edit_sources(small_data_dir, lambda s: s.update(segment={"min_segment_share": 0.3}))
    result = materialize(small_data_dir, segmentation(small_data_dir, customers()))
    gate = check_results(result)["no_tiny_segments"]
    assert not gate.passed and "below segment.min_segment_share 30%" in gate.description
    assert not (small_data_dir / "models" / "customer_segmenter" / "model.pkl").exists()


def test_sales_anomalies_land_with_plots(small_data_dir):
    frame = series_frame(
        {"total": injected(seasonal(10_000, 0)), "store=S01": seasonal(3_000, 1, noise=0.08)}
    )
    assets = [
        upstream("sales_series", "forecasting", frame),
        *build_anomaly_assets(load_settings(small_data_dir)),
    ]
    result = materialize(small_data_dir, assets)
    assert result.success
    table = read_table(small_data_dir, "anomalies.sales_anomalies")
    total = table[table["series_id"] == "total"]
    assert set(pd.to_datetime(SPIKES + DROPS)) <= set(total["period"])
    assert {"anomaly_score", "z", "expected", "direction"} <= set(table.columns)
    meta = next(
        m
        for m in result.asset_materializations_for_node("detect_sales_anomalies")
        if m.asset_key.path == ["sales_anomalies"]
    ).metadata
    assert meta["plot_total"].value.startswith("![anomalies total](data:image/png;base64,")
    assert meta["anomalies"].value == len(table)
    detector = next(
        m
        for m in result.asset_materializations_for_node("detect_sales_anomalies")
        if m.asset_key.path == ["sales_anomaly_detector"]
    ).metadata
    # the IO manager stored no copy: the output is the version this run registered
    assert detector["model_uri"].value == "models:/sales_anomaly_detector/1"
    loaded, _ = registry_resource(load_settings(small_data_dir)).load("sales_anomaly_detector")
    assert sorted(loaded.forests) == ["store", "total"]
