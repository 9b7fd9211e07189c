"""Experiment tracking through dagster-mlflow's `mlflow_tracking` resource.

The store is real and local by default: a SQLite backend and an artifact folder under
`<data dir>/mlflow/` (`mlflow ui --backend-store-uri sqlite:///data/mlflow/mlflow.db`).
MLOPS_MLFLOW_TRACKING_URI in the environment points it at a shared server instead.

dagster-mlflow's resource is old-style and keeps MLflow's global "active run": its
`end_mlflow_on_run_finished` hook ends the run when the job's last node finishes (or any step
fails), after which another asset of the same Dagster run would silently start a fresh MLflow
run; and the implicit asset job of `dagster asset materialize` has no hook at all. So every
asset here logs with an explicit run id (`TrainingRun`, MlflowClient calls, no fluent API),
re-opens the run if the hook closed it, and closes it again when done: all assets of one
Dagster run land in one MLflow run, finished, whatever the executor and hook did.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import mlflow
import pandas as pd
from dagster_mlflow.resources import CONFIG_SCHEMA, MlFlow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from mlops_assets.resources.mlflow_store import seed_sqlite_store
from mlops_assets.settings import REPO_ROOT, Settings

EXPERIMENT = "mlops_assets"
# not MLflow's own MLFLOW_TRACKING_URI: mlflow.set_tracking_uri() writes that variable into the
# process environment, so in a long-lived process it would point at whatever was used last
TRACKING_ENV = "MLOPS_MLFLOW_TRACKING_URI"
UI = os.environ.get("MLFLOW_UI_URL", "http://localhost:5000")  # where `mlflow ui` serves


def tracking_uri(settings: Settings) -> str:
    return os.environ.get(TRACKING_ENV) or f"sqlite:///{settings.data_dir / 'mlflow' / 'mlflow.db'}"


def artifact_root(settings: Settings) -> str:
    return (settings.data_dir / "mlflow" / "artifacts").as_uri()


def ensure_experiment(uri: str, artifacts: str) -> str:
    """The experiment, created with its artifact folder beside the store (MLflow would
    otherwise put artifacts in ./mlruns of whatever directory the process started in)."""
    seed_sqlite_store(uri)
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(EXPERIMENT)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(EXPERIMENT, artifact_location=artifacts)
    except MlflowException:  # another process created it in between
        return client.get_experiment_by_name(EXPERIMENT).experiment_id


@dg.resource(
    config_schema={**CONFIG_SCHEMA, "artifact_location": dg.Field(str, description="Artifact root.")},
    description="dagster-mlflow's MlFlow tracking object, after making sure the experiment keeps "
    "its artifacts in the data directory.",
)
def mlflow_tracking(context):
    config = context.resource_config
    uri = config["mlflow_tracking_uri"]
    experiment_id = ensure_experiment(uri, config["artifact_location"])
    # MlFlow adopts whatever fluent run is active in the process; in a long-lived process that
    # is the previous Dagster run's: end it first, so this run gets (or resumes) its own
    stale = mlflow.active_run()
    if stale is not None and stale.data.tags.get("dagster_run_id") != context.run.run_id:
        mlflow.end_run()
    # MlFlow searches for the Dagster run's MLflow run and starts one when none is found; two
    # steps starting together in separate processes (the multiprocess executor) would both
    # start one. The run is found or created here, under a lock, and handed to MlFlow.
    run_id = run_for(uri, experiment_id, context.run.run_id, context.run.job_name, lock_for(config))
    mlf = MlFlow(_WithRunId(context, run_id))
    yield mlf
    mlf.cleanup_on_error()


class _WithRunId:
    """The init context MlFlow reads, with `mlflow_run_id` filled in."""

    def __init__(self, context, run_id: str):
        self.log = context.log
        self.dagster_run = context.run
        self.run_id = context.run.run_id
        self.resource_config = {**context.resource_config, "mlflow_run_id": run_id}


def lock_for(config: dict) -> Path:
    """A lock file beside the artifact folder (shared by every process using this data dir)."""
    return Path(urlparse(config["artifact_location"]).path).parent / "tracking.lock"


def run_for(uri: str, experiment_id: str, dagster_run_id: str, job_name: str, lock: Path) -> str:
    """The MLflow run of a Dagster run: found by its dagster_run_id tag, else created, under a
    file lock so that concurrent steps agree on one."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(uri)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            found = client.search_runs(
                [experiment_id], f"tags.dagster_run_id = '{dagster_run_id}'", max_results=1
            )
            if found:
                return found[0].info.run_id
            tags = {"dagster_run_id": dagster_run_id, "mlflow.runName": job_name}
            return client.create_run(experiment_id, tags=tags).info.run_id
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def mlflow_resource(settings: Settings) -> dg.ResourceDefinition:
    uri = {"env": TRACKING_ENV} if os.environ.get(TRACKING_ENV) else tracking_uri(settings)
    return mlflow_tracking.configured(
        {
            "experiment_name": EXPERIMENT,
            "mlflow_tracking_uri": uri,
            "artifact_location": artifact_root(settings),
        }
    )


@functools.cache  # once per process, at the first training: not at definitions load
def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def data_hash(frame: pd.DataFrame) -> str:
    """Content hash of a training table (values and column names, not row labels)."""
    rows = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(rows.tobytes() + "|".join(map(str, frame.columns)).encode()).hexdigest()[:16]


def data_profile(frame: pd.DataFrame) -> dict:
    """Rows, and per column its dtype, null share and (numeric) mean, std, min and max."""
    columns = {}
    for name in frame.columns:
        col = frame[name]
        entry = {"dtype": str(col.dtype), "null_share": float(col.isna().mean())}
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            stats = col.astype(float).describe()
            entry |= {k: float(stats[k]) for k in ("mean", "std", "min", "max")}
        else:
            entry["distinct"] = int(col.nunique())
        columns[str(name)] = entry
    return {"rows": len(frame), "columns": columns}


@dataclass
class TrainingRun:
    """One Dagster run's MLflow run, written to by explicit run id."""

    client: MlflowClient
    run_id: str
    experiment_id: str

    @classmethod
    def of(cls, context) -> TrainingRun:
        mlf = context.resources.mlflow
        run_id = mlf.mlflow_run_id or mlf.active_run().info.run_id
        mlf.mlflow_run_id = run_id  # later steps in this process reuse it instead of searching
        client = MlflowClient(mlf.tracking_uri)
        owner = client.get_run(run_id).data.tags.get("dagster_run_id")
        if owner != context.run.run_id:  # never write into another Dagster run's MLflow run
            raise RuntimeError(
                f"MLflow run {run_id} belongs to Dagster run {owner}, not {context.run.run_id}"
            )
        return cls(client, run_id, mlf.experiment.experiment_id)

    @property
    def link(self) -> str:
        return f"{UI}/#/experiments/{self.experiment_id}/runs/{self.run_id}"

    def log(
        self,
        asset: str,
        params: dict,
        metrics: dict[str, float],
        data: pd.DataFrame,
        code_version: str | None,
        artifacts: dict[str, object] | None = None,
    ) -> dict:
        """Params, metrics and tags under the asset's name, the training data's profile and
        hash, and artifacts (DataFrame -> CSV, bytes -> file such as a PNG, str -> text or
        markdown, dict -> JSON, Path -> file or folder) under `<asset>/`; a DataFrame named
        *.parquet is written as Parquet. Returns the metadata
        linking the asset back."""
        self.client.update_run(self.run_id, status="RUNNING")  # re-open if the hook closed it
        digest = data_hash(data)
        tags = {
            f"{asset}.asset_key": asset,
            f"{asset}.code_version": code_version or "none",
            f"{asset}.data_hash": digest,
            "mlops.git_commit": git_commit(),
        }
        stamp = int(pd.Timestamp.now(tz="UTC").timestamp() * 1000)
        self.client.log_batch(
            self.run_id,
            metrics=[Metric(f"{asset}.{k}", float(v), stamp, 0) for k, v in metrics.items() if pd.notna(v)],
            params=[Param(f"{asset}.{k}", str(v)[:6000]) for k, v in params.items()],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )
        self.client.log_dict(self.run_id, data_profile(data), f"{asset}/data_profile.json")
        for name, value in (artifacts or {}).items():
            self._artifact(asset, name, value)
        self.client.set_terminated(self.run_id, "FINISHED")
        return {
            "mlflow_run": dg.MetadataValue.url(self.link),
            "mlflow_run_id": self.run_id,
            "training_data_hash": digest,
        }

    def _artifact(self, asset: str, name: str, value) -> None:
        path = f"{asset}/{name}"
        folder = str(Path(path).parent)  # a name may hold a subfolder: reference/x.parquet
        if isinstance(value, pd.DataFrame | bytes):
            with tempfile.TemporaryDirectory() as tmp:
                file = Path(tmp) / Path(name).name
                if isinstance(value, bytes):
                    file.write_bytes(value)
                elif name.endswith(".parquet"):
                    value.to_parquet(file, index=False)
                else:
                    value.to_csv(file, index=False)
                self.client.log_artifact(self.run_id, str(file), folder)
        elif isinstance(value, dict):
            self.client.log_dict(self.run_id, value, path)
        elif isinstance(value, Path):
            if value.is_dir():
                self.client.log_artifacts(self.run_id, str(value), path)
            else:
                self.client.log_artifact(self.run_id, str(value), folder)
        else:
            self.client.log_text(self.run_id, str(value), path)
