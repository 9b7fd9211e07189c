"""Tracking and registry under Dagster, against a real MLflow store (SQLite + artifact folder
in the temp data directory): one MLflow run per Dagster run named after its job, a child run
per model named after its asset, champion / challenger
promotion, rejection, rollback, the audit log, model cards, racing promotions and ten
unattended cycles."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from mlops_assets.assets.anomalies import build_anomaly_assets
from mlops_assets.assets.forecasting import build_forecasting_assets
from mlops_assets.assets.registry import build_registry_assets
from mlops_assets.assets.segmentation import build_segmentation_assets
from mlops_assets.automation.jobs import rescore_after_rollback, rollback_model_job
from mlops_assets.core.promotion import Decision
from mlops_assets.definitions import registry_resource, resources
from mlops_assets.resources.tracking import (
    EXPERIMENT,
    artifact_root,
    ensure_experiment,
    lock_for,
    run_for,
    tracking_uri,
)
from mlops_assets.settings import load_settings
from mlops_assets_tests.conftest import edit_sources, read_table
from mlops_assets_tests.stubs import lines, product_features, upstream
from mlops_assets_tests.test_anomalies import injected, seasonal, series_frame
from mlops_assets_tests.test_segmentation import customers


def run(data_dir, assets, selection=None, hooks=None, instance=None) -> dg.ExecuteInProcessResult:
    settings = load_settings(data_dir)
    job = dg.define_asset_job("train", selection=selection or dg.AssetSelection.all(), hooks=hooks)
    defs = dg.Definitions(assets=assets, jobs=[job], resources=resources(settings))
    return defs.resolve_job_def("train").execute_in_process(
        instance=instance or dg.DagsterInstance.ephemeral(), raise_on_error=False
    )


def segmentation_and_anomalies(data_dir, table=None) -> list:
    settings = load_settings(data_dir)
    sales = series_frame({"total": injected(seasonal(10_000, 0))})
    return [
        upstream("customer_features", "features", customers() if table is None else table),
        upstream("sales_series", "forecasting", sales),
        *build_segmentation_assets(settings),
        *build_anomaly_assets(settings),
        *build_registry_assets(settings),
    ]


def mlflow_client(data_dir) -> MlflowClient:
    return MlflowClient(tracking_uri(load_settings(data_dir)))


def materialization(result, key: str) -> dict:
    return next(
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key.path == [key]
    )


def test_one_mlflow_run_per_dagster_run_and_a_child_run_per_model(small_data_dir, monkeypatch):
    monkeypatch.setenv("MLFLOW_UI_URL", "http://mlflow.example:5055")
    assets = segmentation_and_anomalies(small_data_dir)
    result = run(small_data_dir, assets)
    assert result.success
    client = mlflow_client(small_data_dir)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment.artifact_location.startswith((small_data_dir / "mlflow" / "artifacts").as_uri())
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1  # one per Dagster run, named after its job
    parent = parents[0]
    assert parent.data.tags["dagster_run_id"] == result.run_id and parent.info.status == "FINISHED"
    assert parent.info.run_name == "train" and parent.data.tags["dagster_job"] == "train"
    children = {
        r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert set(children) == {"customer_segmenter", "sales_anomaly_detector"}
    assert {r.info.status for r in children.values()} == {"FINISHED"}
    assert {"customer_segmenter.k", "customer_segmenter.features"} <= set(
        children["customer_segmenter"].data.params
    )
    assert "sales_anomaly_detector.min_abs_z" in children["sales_anomaly_detector"].data.params
    assert children["customer_segmenter"].data.metrics["customer_segmenter.silhouette"] > 0.6
    for asset, mlrun in children.items():
        assert mlrun.data.tags["dagster_run_id"] == result.run_id and mlrun.data.tags["asset_key"] == asset
        assert len(mlrun.data.tags[f"{asset}.data_hash"]) == 16
        assert mlrun.data.tags[f"{asset}.code_version"] == "1"
        artifacts = {a.path for a in client.list_artifacts(mlrun.info.run_id, asset)}
        assert {f"{asset}/model", f"{asset}/data_profile.json"} <= artifacts
        assert len(mlrun.data.tags["mlops.git_commit"]) >= 7
    segmenter_run = children["customer_segmenter"]
    assert "customer_segmenter/k_sweep.png" in {
        a.path for a in client.list_artifacts(segmenter_run.info.run_id, "customer_segmenter")
    }
    meta = materialization(result, "customer_segmenter")
    assert meta["mlflow_run_id"].value == segmenter_run.info.run_id
    # the link follows the configured MLflow UI address
    assert meta["mlflow_run"].value == (
        f"http://mlflow.example:5055/#/experiments/{experiment.experiment_id}/runs/{segmenter_run.info.run_id}"
    )
    # each registered version points at its model's run, carries its code version and a signature,
    # and loads as MLflow pyfunc by the registry's alias (what a user outside Dagster would do)
    registry = registry_resource(load_settings(small_data_dir))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri(load_settings(small_data_dir)))
    for asset, mlrun in children.items():
        version = registry.champion(asset)
        assert version.run_id == mlrun.info.run_id and version.tags["code_version"] == "1"
        info = mlflow.models.get_model_info(f"models:/{asset}@champion")
        assert info.signature is not None and info.signature.inputs.input_names()
    segmenter = mlflow.pyfunc.load_model("models:/customer_segmenter@champion")
    names = segmenter.metadata.signature.inputs.input_names()
    assert "recency_days" in names
    table = customers()
    assert len(segmenter.predict(table[names].head(3).astype(float))) == 3
    # registered, first version champion, the batch output scored with it, the card written
    registry = registry_resource(load_settings(small_data_dir))
    assert str(registry.champion("customer_segmenter").version) == "1"
    assert (read_table(small_data_dir, "segmentation.customer_segments")["model_version"] == "1").all()
    cards = read_table(small_data_dir, "registry.model_cards").set_index("model")
    card = cards.loc["customer_segmenter", "card"]
    assert "## customer_segmenter v1" in card and "### Lineage" in card and result.run_id in card
    log = read_table(small_data_dir, "registry.model_audit_log")
    assert set(log["event"]) == {"registration", "promotion"} and set(log["dagster_run_id"]) == {
        result.run_id
    }


def forecasting_assets(data_dir) -> list:
    days = pd.date_range("2023-01-02", periods=200, freq="D")
    rng = np.random.default_rng(0)
    week = np.array([0.8, 0.85, 0.9, 1.0, 1.2, 1.5, 1.1])[days.dayofweek]
    frame = pd.concat(
        [
            pd.DataFrame(
                {
                    "series_id": sid,
                    "level": level,
                    "key": sid,
                    "period": days,
                    "revenue": base * week * (1 + 0.002 * np.arange(200)) * rng.lognormal(0, 0.08, 200),
                    "units": 1.0,
                    "day_of_week": days.dayofweek,
                    "holidays": 0,
                }
            )
            for sid, level, base in (("total", "total", 5000), ("store=S1", "store", 2000))
        ],
        ignore_index=True,
    )
    settings = load_settings(data_dir)
    built = build_forecasting_assets(settings)
    return [
        upstream("sales_series", "forecasting", frame),
        upstream("silver_transactions", "silver", lines("2023-06-01", 50)),
        upstream("product_features", "features", product_features()),
        *built[1:],
        *build_registry_assets(settings),
    ]


def forecast_settings(data_dir, candidates: list[str]) -> None:
    edit_sources(
        data_dir,
        lambda s: s.update(
            forecast={
                "horizon": 14,
                "levels": ["total", "store"],
                "candidates": candidates,
                "ensemble_size": 0,
            },
            window={"start_date": "2023-01-02", "end_date": "2023-07-20"},
        ),
    )


def test_champion_challenger_promotion_rejection_and_rollback(small_data_dir):
    registry = registry_resource(load_settings(small_data_dir))
    # v1: seasonal naive only, the first version passing its gates becomes champion
    forecast_settings(small_data_dir, [])
    assert run(small_data_dir, forecasting_assets(small_data_dir)).success
    v1 = read_table(small_data_dir, "forecasting.sales_forecasts")
    assert str(registry.champion("sales_forecaster").version) == "1"

    # v2: ETS is better on the same folds, by a Diebold-Mariano test
    forecast_settings(small_data_dir, ["ets"])
    result = run(small_data_dir, forecasting_assets(small_data_dir))
    assert result.success
    meta = materialization(result, "sales_forecaster")
    assert meta["promoted"].value and "challenger better: Diebold-Mariano" in meta["promotion_decision"].value
    assert meta["promotion_p_value"].value < 0.05 and meta["promotion_effect_size"].value > 0
    champion = registry.champion("sales_forecaster")
    assert str(champion.version) == "2" and float(champion.tags["stat.p_value"]) < 0.05
    assert champion.tags["previous_champion"] == "1"
    v2 = read_table(small_data_dir, "forecasting.sales_forecasts")
    assert (v2["model_version"] == "2").all() and not np.allclose(v2["mean"], v1["mean"])

    # v3: back to seasonal naive, worse on the same folds: registered, rejected, nothing changes
    forecast_settings(small_data_dir, [])
    result = run(small_data_dir, forecasting_assets(small_data_dir))
    assert result.success
    meta = materialization(result, "sales_forecaster")
    assert not meta["promoted"].value and "not better at level 0.05" in meta["promotion_decision"].value
    assert str(registry.champion("sales_forecaster").version) == "2"
    client = registry.client
    assert str(client.get_model_version_by_alias("sales_forecaster", "challenger").version) == "3"
    assert client.get_model_version("sales_forecaster", "3").tags["decision"] == "rejected"
    pd.testing.assert_frame_equal(read_table(small_data_dir, "forecasting.sales_forecasts"), v2)

    # rollback: champion back to the version v2 replaced, audited; batch output follows
    settings = load_settings(small_data_dir)
    outcome = rollback_model_job.execute_in_process(
        run_config={"ops": {"rollback_model": {"config": {"model_name": "sales_forecaster"}}}},
        resources={"registry": registry_resource(settings)},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert outcome.success and str(registry.champion("sales_forecaster").version) == "1"
    assert run(
        small_data_dir, forecasting_assets(small_data_dir), dg.AssetSelection.assets("sales_forecasts")
    ).success
    pd.testing.assert_frame_equal(
        read_table(small_data_dir, "forecasting.sales_forecasts").drop(columns="model_version"),
        v1.drop(columns="model_version"),
    )
    log = registry.audit_log()
    forecaster = log[log["model"] == "sales_forecaster"]
    assert list(forecaster["event"]) == [
        "registration", "promotion", "registration", "promotion", "registration", "rejection", "rollback",
    ]  # fmt: skip
    rejection = forecaster[forecaster["event"] == "rejection"].iloc[0]
    assert '"p_value"' in rejection["details"] and rejection["version"] == "3"


def test_racing_promotions_end_with_one_champion_that_faced_its_predecessor(small_data_dir):
    assert run(small_data_dir, segmentation_and_anomalies(small_data_dir)).success  # v1 champion
    for _ in range(2):  # v2, v3 as challengers to race
        assert run(small_data_dir, segmentation_and_anomalies(small_data_dir)).success
    registry = registry_resource(load_settings(small_data_dir))
    seen: dict[str, str] = {}

    def decide_for(version: str):
        def decide(champion) -> Decision:
            seen[version] = str(champion.version)
            time.sleep(0.5)  # a slow comparison: without the lock both would see the same champion
            return Decision(True, f"raced against v{champion.version}")

        return decide

    threads = [
        threading.Thread(target=registry.promote, args=("customer_segmenter", v, decide_for(v), "race"))
        for v in ("2", "3")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = str(registry.champion("customer_segmenter").version)
    first, second = sorted(seen, key=lambda v: v == final)  # the last to promote holds the alias
    assert seen[second] == first  # it compared against the version promoted just before it
    assert registry.client.get_model_version("customer_segmenter", final).tags["compared_with"] == first


def test_ten_unattended_cycles_and_a_failing_one_keeps_the_champion(small_data_dir):
    registry = registry_resource(load_settings(small_data_dir))
    instance = dg.DagsterInstance.ephemeral()
    champions = []
    for cycle in range(10):
        strict = cycle == 5
        edit_sources(
            small_data_dir,
            lambda s, strict=strict: s.update(segment={"min_silhouette": 0.99 if strict else 0.25}),
        )
        selection = dg.AssetSelection.groups("segmentation") | dg.AssetSelection.assets("customer_features")
        result = run(
            small_data_dir,
            segmentation_and_anomalies(small_data_dir, customers(seed=cycle)),
            selection,
            instance=instance,
        )
        assert result.success != strict
        champions.append(str(registry.champion("customer_segmenter").version))
    assert champions[5] == champions[4]  # the failing cycle left the champion in place
    log = registry.audit_log()
    log = log[log["model"] == "customer_segmenter"]
    events = log["event"].value_counts().to_dict()
    # nine trained past their gates and registered; each promoted or rejected on comparison
    assert events["registration"] == 9 and events["promotion"] + events["rejection"] == 10
    decided = log[log["event"].isin(["promotion", "rejection"]) & (log["version"] != "")]
    assert len(decided) == 9 and decided["version"].tolist() == [str(v) for v in range(1, 10)]
    # after every cycle the champion is the last promoted version
    promoted = log[log["event"] == "promotion"]["version"].tolist()
    assert champions[-1] == promoted[-1] and set(champions) == set(promoted)
    gate = log[(log["event"] == "rejection") & (log["version"] == "")]
    rejection = gate.iloc[0]
    assert (
        "silhouette_above_minimum" in rejection["details"]
        and "below segment.min_silhouette" in rejection["reason"]
    )


def test_steps_starting_together_share_one_mlflow_run(small_data_dir):
    """The multiprocess executor starts steps in separate processes at once; each initializes
    the tracking resource, which must find or create the same MLflow run."""
    settings = load_settings(small_data_dir)
    uri = tracking_uri(settings)
    experiment = ensure_experiment(uri, artifact_root(settings))
    lock = lock_for(artifact_root(settings))
    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lambda _: run_for(uri, experiment, "dagster-run-1", "job", lock), range(4)))
    assert len(set(ids)) == 1
    assert len(MlflowClient(uri).search_runs([experiment])) == 1
    other = run_for(uri, experiment, "dagster-run-2", "job", lock)
    assert other != ids[0]


def test_a_successful_rollback_requests_the_rescore(small_data_dir):
    assert run(small_data_dir, segmentation_and_anomalies(small_data_dir)).success  # v1
    assert run(small_data_dir, segmentation_and_anomalies(small_data_dir)).success  # v2 replaces it
    settings = load_settings(small_data_dir)
    with dg.instance_for_test() as instance:
        outcome = rollback_model_job.execute_in_process(
            run_config={"ops": {"rollback_model": {"config": {"model_name": "customer_segmenter"}}}},
            resources={"registry": registry_resource(settings)},
            instance=instance,
        )
        assert outcome.success
        assert str(registry_resource(settings).champion("customer_segmenter").version) == "1"
        success = next(e for e in outcome.all_events if e.event_type_value == "PIPELINE_SUCCESS")
        context = dg.build_run_status_sensor_context(
            sensor_name="rescore_after_rollback",
            dagster_event=success,
            dagster_instance=instance,
            dagster_run=outcome.dagster_run,
        )
        request = rescore_after_rollback(context)
    assert isinstance(request, dg.RunRequest) and request.run_key == outcome.run_id
    assert rescore_after_rollback.job_name == "rescore_job"
