"""The production profile (issue 18): `deploy/cluster up` starts PostgreSQL, Redis, an MLflow
tracking server, two Celery workers, the Dagster daemon and webserver on loopback; a run
submitted to the webserver goes through the QueuedRunCoordinator, its steps execute in the
Celery workers, its runs and events land in PostgreSQL and its models in the tracking server.
`deploy/cluster down` stops it all. Each test module starts its own cluster on free ports in a
folder of its own, so it never meets a developer's."""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from mlops_assets.assets.partitions import partition_key
from mlops_assets.core import warehouse
from mlops_assets_tests.conftest import SMALL

# one xdist worker takes the whole module (--dist loadgroup): it shares one cluster
pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.xdist_group("cluster")]

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "deploy" / "cluster"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster(env: dict, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(_small_template):
    # PostgreSQL runs as its own user: the folder must be reachable by it (pytest's is not)
    folder = Path(tempfile.mkdtemp(prefix="mlops-cluster-", dir="/tmp"))
    folder.chmod(0o755)
    data = folder / "data"
    shutil.copytree(_small_template, data)
    env = {
        **os.environ,
        "MLOPS_CLUSTER_DIR": str(folder / "cluster"),
        "MLOPS_DATA_DIR": str(data),
        "MLOPS_VENV": sys.prefix,
        # a killed worker's step goes to the other one after 60 s (every step here takes less)
        "MLOPS_CELERY_VISIBILITY_TIMEOUT": "60",
        **{
            name: str(_free_port())
            for name in ("MLOPS_PG_PORT", "MLOPS_REDIS_PORT", "MLOPS_MLFLOW_PORT", "MLOPS_DAGSTER_PORT")
        },
    }
    for name in ("DAGSTER_HOME", "MLOPS_MLFLOW_TRACKING_URI", "MLOPS_EXECUTOR", "MLOPS_PG_PASSWORD"):
        env.pop(name, None)
    started = _cluster(env, "up")
    try:
        assert started.returncode == 0, started.stdout + started.stderr[-3000:]
        yield {"env": env, "client": _unquote(_cluster(env, "env").stdout), "folder": folder, "data": data}
    finally:
        stopped = _cluster(env, "down", timeout=180)
        logs = folder / "cluster" / "logs"
        if stopped.returncode != 0 and logs.exists():
            print({p.name: p.read_text()[-2000:] for p in logs.iterdir()})
        shutil.rmtree(folder, ignore_errors=True)


def _unquote(text: str) -> dict[str, str]:
    """`deploy/cluster env`'s export lines as a mapping."""
    import shlex

    out = {}
    for line in text.splitlines():
        if not line.startswith("export "):
            continue
        for word in shlex.split(line.removeprefix("export ")):
            name, _, value = word.partition("=")
            out[name] = value
    return out


def _wait(client, run_id: str, timeout: float, tolerate: int = 5) -> dg.DagsterRunStatus:
    """The run's terminal status; up to `tolerate` failed queries in a row are asked again."""
    from dagster_graphql import DagsterGraphQLClientError

    deadline = time.monotonic() + timeout
    errors = 0
    status = None
    while time.monotonic() < deadline:
        try:
            status = client.get_run_status(run_id)
            errors = 0
        except DagsterGraphQLClientError:
            errors += 1
            if errors > tolerate:
                raise
            time.sleep(2)
            continue
        if status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
            return status
        time.sleep(2)
    raise TimeoutError(f"run {run_id} still {status} after {timeout:.0f} s")


def _parent(pid: int) -> int | None:
    """The parent of a process that still runs (a Celery pool process lives as long as its worker)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))


def _pids(folder: Path) -> dict[str, int]:
    run = folder / "cluster" / "run"
    return {p.stem: int(p.read_text()) for p in run.glob("*.pid")}


def _submit(cluster, keys=None, attempts: int = 6) -> str:
    """Submit the asset job over the webserver's GraphQL API, over the sample's partitions."""

    from mlops_assets.definitions import build_definitions
    from mlops_assets.settings import load_settings

    if keys is None:
        graph = build_definitions(load_settings(cluster["data"])).resolve_asset_graph()
        keys = sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string())
    import uuid

    from dagster_graphql import DagsterGraphQLClientError

    tags = {
        "dagster/asset_partition_range_start": partition_key(SMALL["start"]),
        "dagster/asset_partition_range_end": partition_key(SMALL["end"]),
        "mlops/submission": uuid.uuid4().hex,  # a retried submission never makes a second run
    }
    for attempt in range(attempts):
        try:
            return _graphql(cluster).submit_job_execution(
                "__ASSET_JOB", repository_location_name="mlops_assets", asset_selection=keys, tags=tags
            )
        except DagsterGraphQLClientError:
            # an error may come after the run was stored: look for it before asking again
            with _instance(cluster) as instance:
                mine = dg.RunsFilter(tags={"mlops/submission": tags["mlops/submission"]})
                found = instance.get_run_records(mine)
            if found:
                return found[0].dagster_run.run_id
            if attempt == attempts - 1:
                raise
            time.sleep(2)
    raise AssertionError("unreachable")


def _graphql(cluster):
    from dagster_graphql import DagsterGraphQLClient

    port = int(cluster["client"]["MLOPS_DAGSTER_URL"].rsplit(":", 1)[1])
    return DagsterGraphQLClient("127.0.0.1", port_number=port)


def _logs(cluster, run_id: str) -> list:
    with _instance(cluster) as instance:
        return instance.all_logs(run_id)


@contextlib.contextmanager
def _instance(cluster):
    """The cluster's Dagster instance. Its dagster.yaml reads the database URL from the
    environment: set for the instance's life only, never leaked into the tests that run after
    (an MLflow URI left behind sent their runs to this cluster's stopped server)."""
    saved = {name: os.environ.get(name) for name in cluster["client"]}
    os.environ.update(cluster["client"])
    try:
        with dg.DagsterInstance.from_config(cluster["client"]["DAGSTER_HOME"]) as instance:
            yield instance
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _events(logs) -> list:
    return [e.dagster_event for e in logs if e.dagster_event is not None]


PUBLISHED = ("silver.silver_transactions", "silver.quarantined_transactions", "quality.data_quality_report")


def _published(cluster) -> dict[str, pd.DataFrame]:
    root = warehouse.location(cluster["data"], "delta")
    tables = {name: warehouse.read_table(root, name) for name in PUBLISHED}
    return {n: t.sort_values(list(t.columns[:6]), ignore_index=True) for n, t in tables.items()}


def _versions(cluster) -> dict[str, list[tuple[int, str]]]:
    """model -> [(version, the Dagster run that registered it)]."""
    from mlflow import MlflowClient

    mlflow = MlflowClient(cluster["client"]["MLOPS_MLFLOW_TRACKING_URI"])
    out = {}
    for model in mlflow.search_registered_models():
        found = mlflow.search_model_versions(f"name='{model.name}'")
        out[model.name] = sorted((int(v.version), v.tags.get("dagster_run_id", "")) for v in found)
    return out


@pytest.fixture(scope="module")
def built(cluster):
    """The sample built once through the profile, undisturbed, while a reader queries the Delta
    warehouse; what the fault tests compare with."""
    import threading

    root = warehouse.location(cluster["data"], "delta")
    reads: list[tuple[float, float, int]] = []  # (start, end, silver rows) of each query
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            started = time.time()
            try:
                with warehouse.connect(root, ["silver.silver_transactions"]) as con:
                    rows = con.execute("select count(*) from silver.silver_transactions").fetchone()[0]
            except Exception:  # noqa: BLE001 - no table yet (or no folder): not a read
                rows = -1
            reads.append((started, time.time(), rows))
            time.sleep(0.2)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    run_id = _submit(cluster)
    try:
        status = _wait(_graphql(cluster), run_id, timeout=900)
    finally:
        done.set()
        reader.join()
    return {"run_id": run_id, "status": status, "reads": reads, "published": _published(cluster),
            "versions": _versions(cluster)}  # fmt: skip


def test_the_sample_builds_through_the_profile(cluster, built):
    import psycopg2
    from mlflow import MlflowClient

    env = cluster["client"]
    run_id, status = built["run_id"], built["status"]
    logs = _logs(cluster, run_id)
    events = _events(logs)
    failures = [e.event_specific_data.error.to_string() for e in events if e.is_step_failure]
    assert status == dg.DagsterRunStatus.SUCCESS, failures[:2]
    with _instance(cluster) as instance:
        # the run and its events are in PostgreSQL, and it went through the queue
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    kinds = {e.event_type for e in events}
    assert {dg.DagsterEventType.RUN_ENQUEUED, dg.DagsterEventType.RUN_STARTING} <= kinds
    with psycopg2.connect(host="127.0.0.1", port=int(env["MLOPS_PG_PORT"]), user=env["MLOPS_PG_USER"],
                          password=env["MLOPS_PG_PASSWORD"], dbname="dagster") as con:  # fmt: skip
        cur = con.cursor()
        cur.execute("select status from runs where run_id = %s", (run_id,))
        assert cur.fetchall() == [("SUCCESS",)]
        cur.execute("select count(*) from event_logs where run_id = %s", (run_id,))
        assert cur.fetchone()[0] == len(logs) > 100

    # a reader queried the Delta warehouse while the run wrote it: between the run's first write
    # of silver and its end, a query returned the rows committed so far
    timed = [(e.timestamp, e.dagster_event) for e in logs if e.dagster_event is not None]
    silver_key = dg.AssetKey("silver_transactions")
    wrote = min(t for t, e in timed if e.is_step_materialization and e.asset_key == silver_key)
    ended = next(t for t, e in timed if e.event_type == dg.DagsterEventType.RUN_SUCCESS)
    during = [rows for start, end, rows in built["reads"] if wrote <= start and end <= ended]
    silver = len(built["published"]["silver.silver_transactions"])
    assert during and all(rows == silver > 0 for rows in during), (len(during), silver)
    assert (cluster["data"] / "warehouse").is_dir() and not (cluster["data"] / "warehouse.duckdb").exists()

    # every step ran in a Celery worker's process (-P solo: the worker itself), both workers took steps
    workers = {v: k for k, v in _pids(cluster["folder"]).items() if k.startswith("celery-worker")}
    run_pid = next(e.pid for e in events if e.event_type == dg.DagsterEventType.RUN_START)
    starts = [e for e in events if e.event_type == dg.DagsterEventType.STEP_START]
    done = {e.step_key for e in events if e.is_step_success}
    assert len(done) >= 15 and {e.step_key for e in starts} == done
    owner = {e.step_key: workers.get(e.pid, workers.get(_parent(e.pid))) for e in starts}
    assert all(e.pid != run_pid for e in starts)
    assert None not in owner.values(), owner
    assert set(owner.values()) == {"celery-worker-1", "celery-worker-2"}, owner
    engine = [e.event_specific_data.metadata or {} for e in events if e.is_engine_event]
    named = {str(m["Celery worker"].value) for m in engine if "Celery worker" in m}
    assert {n.split("@")[0] for n in named} == {"mlops-worker-1", "mlops-worker-2"}, named

    # the models are registered in the tracking server, their artifacts served by it
    mlflow = MlflowClient(env["MLOPS_MLFLOW_TRACKING_URI"])
    models = {m.name: m for m in mlflow.search_registered_models()}
    assert "sales_forecaster" in models, list(models)
    for model in models.values():
        version = mlflow.get_model_version_by_alias(model.name, "champion")
        run = mlflow.get_run(version.run_id)
        assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
    served = cluster["folder"] / "cluster" / "mlflow-artifacts"
    assert any(p.is_file() for p in served.rglob("*"))

    # up again changes nothing: the same processes answer
    before = _pids(cluster["folder"])
    again = _cluster(cluster["env"], "up")
    assert again.returncode == 0 and _pids(cluster["folder"]) == before
    assert "mlflow-server        up" in again.stdout and "celery-worker-2      up" in again.stdout


def _step_starts(cluster, run_id: str) -> list:
    return [e for e in _events(_logs(cluster, run_id)) if e.event_type == dg.DagsterEventType.STEP_START]


# ingestion and the forecaster's training: what the fault tests run (the whole graph is built once)
FORECAST_PATH = [
    dg.AssetKey(k)
    for k in ("bronze_transactions", "silver_transactions", "quarantined_transactions", "data_quality_report",
              "bronze_products", "bronze_inventory", "product_features", "sales_series", "sales_forecaster")
]  # fmt: skip


def _assert_as_undisturbed(cluster, built) -> None:
    """Silver, quarantine and the quality report hold what the undisturbed build published; no
    run registered a model twice (a retried step registers no second version)."""
    after = _published(cluster)
    for name, table in built["published"].items():
        pd.testing.assert_frame_equal(after[name], table, obj=name)
    versions = _versions(cluster)
    assert set(versions) == set(built["versions"])
    for model, found in versions.items():
        by_run = [run for _, run in found]
        assert all(by_run.count(r) == 1 for r in set(by_run)), (model, found)


def test_a_killed_worker_leaves_its_step_to_the_other(cluster, built):
    """SIGKILL the Celery worker running the sales forecaster's training mid-step: the task,
    unacknowledged, goes to the other worker after the visibility timeout and the run finishes
    there, publishing what an undisturbed run publishes. `deploy/cluster up` then starts the
    killed worker again."""
    import signal

    assert built["status"] == dg.DagsterRunStatus.SUCCESS
    run_id = _submit(cluster, FORECAST_PATH)
    workers = {pid: name for name, pid in _pids(cluster["folder"]).items() if name.startswith("celery")}
    deadline = time.monotonic() + 600
    victim = None
    while victim is None and time.monotonic() < deadline:
        started = [e for e in _step_starts(cluster, run_id) if e.step_key == "forecast_sales"]
        if started:
            victim = started[0].pid
        time.sleep(0.3)
    assert victim in workers, (victim, workers)
    time.sleep(2)  # into the training
    os.killpg(victim, signal.SIGKILL)
    status = _wait(_graphql(cluster), run_id, timeout=900)

    events = _events(_logs(cluster, run_id))
    assert status == dg.DagsterRunStatus.SUCCESS, [e.message for e in events if e.is_step_failure][:2]
    starts = [e for e in events if e.event_type == dg.DagsterEventType.STEP_START]
    tries = [e.pid for e in starts if e.step_key == "forecast_sales"]
    assert len(tries) == 2 and tries[0] == victim and workers[tries[1]] != workers[victim], (tries, workers)
    assert sum(e.is_step_success and e.step_key == "forecast_sales" for e in events) == 1
    _assert_as_undisturbed(cluster, built)
    assert _versions(cluster)["sales_forecaster"][-1][1] == run_id

    again = _cluster(cluster["env"], "up")
    assert again.returncode == 0 and f"{workers[victim]:<20} up" in again.stdout, again.stdout


def test_a_postgres_restart_mid_run_ends_the_run_and_a_rerun_completes(cluster, built):
    """Restart PostgreSQL while a run writes its events there: the run ends (it never hangs:
    failed, or finished when every write found the database back), and a re-run of the same
    selection (ingestion and the forecaster's training) succeeds, leaving silver, quarantine,
    the report and the registry as the undisturbed build did, with every event of both runs
    stored once."""
    import psycopg2

    assert built["status"] == dg.DagsterRunStatus.SUCCESS
    run_id = _submit(cluster, FORECAST_PATH)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if any(e.step_key == "ingest_transactions" for e in _step_starts(cluster, run_id)):
            break
        time.sleep(0.3)
    restarted = _cluster(cluster["env"], "restart-postgres", timeout=120)
    assert restarted.returncode == 0, restarted.stderr
    # the webserver answers every request after the restart (its pooled connections are tested
    # before use: mlops_assets.pg_storage), so neither query nor submission is retried here
    first = _wait(_graphql(cluster), run_id, timeout=900, tolerate=0)
    assert first in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)

    rerun = _submit(cluster, FORECAST_PATH, attempts=1)
    assert _wait(_graphql(cluster), rerun, timeout=900, tolerate=0) == dg.DagsterRunStatus.SUCCESS
    with _instance(cluster) as instance:
        tag = instance.get_run_by_id(rerun).tags["mlops/submission"]
        submitted = instance.get_runs(dg.RunsFilter(tags={"mlops/submission": tag}))
    assert [r.run_id for r in submitted] == [rerun]
    _assert_as_undisturbed(cluster, built)
    env = cluster["client"]
    with psycopg2.connect(host="127.0.0.1", port=int(env["MLOPS_PG_PORT"]), user=env["MLOPS_PG_USER"],
                          password=env["MLOPS_PG_PASSWORD"], dbname="dagster") as con:  # fmt: skip
        cur = con.cursor()
        for rid in (run_id, rerun):
            cur.execute("select count(*), count(distinct event) from event_logs where run_id = %s", (rid,))
            count, distinct = cur.fetchone()
            assert count == distinct == len(_logs(cluster, rid)) > 50
