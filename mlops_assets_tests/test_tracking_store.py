"""A new SQLite MLflow store is a copy of the empty store MLflow's migrations built once."""

from __future__ import annotations

import sqlite3

import pytest
from mlflow import MlflowClient

from mlops_assets.resources import mlflow_store
from mlops_assets.resources.tracking import ensure_experiment


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for the module: its empty store is built once (MLflow's migrations, ~4 s)."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_CACHE_DIR", str(folder))
        yield folder


def test_new_store_is_a_working_copy_of_the_empty_store(tmp_path, cache):
    first = f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}"
    assert mlflow_store.seed_sqlite_store(first)
    template = mlflow_store.empty_store()
    assert template.parent == cache and template.exists() and not list(cache.glob(".*.tmp"))
    with sqlite3.connect(template) as db:  # the template keeps no default experiment of its own
        assert db.execute("select count(*) from experiments").fetchone()[0] == 0
        assert db.execute("select count(*) from alembic_version").fetchone()[0] == 1

    built = template.stat().st_mtime_ns
    second = f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}"
    experiment = ensure_experiment(second, (tmp_path / "b" / "artifacts").as_uri())
    client = MlflowClient(second, registry_uri=second)
    assert client.get_experiment(experiment).artifact_location == (tmp_path / "b" / "artifacts").as_uri()
    assert client.get_experiment("0").name == "Default"  # MLflow added its own on opening the copy
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "m", 1.5)
    client.create_registered_model("m1")
    version = client.create_model_version("m1", "runs:/x/model", run.info.run_id)
    client.set_registered_model_alias("m1", "champion", version.version)
    assert client.get_model_version_by_alias("m1", "champion").version == version.version
    assert client.get_run(run.info.run_id).data.metrics == {"m": 1.5}
    assert template.stat().st_mtime_ns == built  # copied, not rebuilt


def test_existing_and_server_stores_are_left_alone(tmp_path, cache):
    path = tmp_path / "mlflow.db"
    uri = f"sqlite:///{path}"
    ensure_experiment(uri, (tmp_path / "art").as_uri())
    before = path.read_bytes()
    assert not mlflow_store.seed_sqlite_store(uri)
    assert path.read_bytes() == before
    assert not mlflow_store.seed_sqlite_store("http://127.0.0.1:5000")
    assert not list(cache.glob(".*.tmp")) and not list(tmp_path.glob(".*.tmp"))  # nothing half-written
