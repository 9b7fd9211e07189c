"""Experiment tracking: `MlflowTracking`, a ConfigurableResource over MLflow's client.

The store is real and local by default: a SQLite backend and an artifact folder under
`<data dir>/mlflow/` (`mlflow ui --backend-store-uri sqlite:///data/mlflow/mlflow.db`).
MLOPS_MLFLOW_TRACKING_URI in the environment points it at a shared server instead, and
MLFLOW_UI_URL at the address the MLflow UI serves (the links in the Dagster UI follow it).

Every Dagster run that trains has one MLflow run named after its job (`train_models_job`;
`materialize` for a selection run from the UI or the CLI), and every model trained in it a
child run named after its asset, nested under it (`mlflow.parentRunId`). The parent is found
or created under a file lock, so steps starting together in separate processes (the
multiprocess executor) agree on one. No fluent API and no global active run: each asset logs
by explicit run ids (`TrainingRun`) and closes its runs when done, whatever the executor.
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
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from pydantic import Field

from mlops_assets.resources.mlflow_store import seed_sqlite_store
from mlops_assets.settings import REPO_ROOT, Settings

EXPERIMENT = "mlops_assets"
# not MLflow's own MLFLOW_TRACKING_URI: mlflow.set_tracking_uri() writes that variable into the
# process environment, so in a long-lived process it would point at whatever was used last
TRACKING_ENV = "MLOPS_MLFLOW_TRACKING_URI"
UI_ENV = "MLFLOW_UI_URL"  # where `mlflow ui` (or the tracking server) serves
DEFAULT_UI = "http://localhost:5000"


def tracking_uri(settings: Settings) -> str:
    return os.environ.get(TRACKING_ENV) or f"sqlite:///{settings.data_dir / 'mlflow' / 'mlflow.db'}"


def artifact_root(settings: Settings) -> str:
    return (settings.data_dir / "mlflow" / "artifacts").as_uri()


def ensure_experiment(uri: str, artifacts: str, name: str = EXPERIMENT) -> str:
    """The experiment, created with its artifact folder beside the store (MLflow would
    otherwise put artifacts in ./mlruns of whatever directory the process started in)."""
    seed_sqlite_store(uri)
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    # a tracking server keeps the artifacts itself (mlflow server --serve-artifacts)
    served = urlparse(uri).scheme in ("http", "https")
    try:
        return client.create_experiment(name, artifact_location=None if served else artifacts)
    except MlflowException:  # another process created it in between
        return client.get_experiment_by_name(name).experiment_id


def run_label(job_name: str) -> str:
    """The MLflow run name of a Dagster run: its job, or `materialize` for the implicit job of a
    selection run from the UI or `dagster asset materialize`."""
    return "materialize" if job_name.startswith("__ASSET_JOB") else job_name


class MlflowTracking(dg.ConfigurableResource):
    """Where training runs are tracked, and the MLflow runs of a Dagster run."""

    tracking_uri: str = Field(description="MLflow tracking URI (a SQLite file or a server).")
    artifact_location: str = Field(description="Artifact root of the experiment (when created here).")
    experiment_name: str = Field(default=EXPERIMENT, description="MLflow experiment of every training.")
    ui_url: str = Field(
        default=DEFAULT_UI, description=f"Where the MLflow UI serves (links in Dagster); env {UI_ENV}."
    )

    def training_run(self, context: dg.AssetExecutionContext, asset: str) -> TrainingRun:
        """A new child run named `asset` under the Dagster run's MLflow run (found or created)."""
        experiment = ensure_experiment(self.tracking_uri, self.artifact_location, self.experiment_name)
        lock = lock_for(self.artifact_location)
        parent = run_for(self.tracking_uri, experiment, context.run.run_id, context.run.job_name, lock)
        client = MlflowClient(self.tracking_uri)
        tags = {
            "dagster_run_id": context.run.run_id,
            "dagster_job": context.run.job_name,
            "asset_key": asset,
            "mlflow.parentRunId": parent,
            "mlflow.runName": asset,
        }
        child = client.create_run(experiment, tags=tags).info.run_id
        return TrainingRun(client, child, experiment, self.ui_url, parent)


def lock_for(artifact_location: str) -> Path:
    """A lock file beside the artifact folder (shared by every process using this data dir)."""
    return Path(urlparse(artifact_location).path).parent / "tracking.lock"


def run_for(uri: str, experiment_id: str, dagster_run_id: str, job_name: str, lock: Path) -> str:
    """The MLflow run of a Dagster run: found by its dagster_run_id tag, else created, under a
    file lock so that concurrent steps agree on one."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(uri)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            found = client.search_runs(
                [experiment_id],
                f"tags.dagster_run_id = '{dagster_run_id}' and tags.mlops_role = 'dagster_run'",
                max_results=1,
            )
            if found:
                return found[0].info.run_id
            tags = {
                "dagster_run_id": dagster_run_id,
                "mlops_role": "dagster_run",  # the parent; its model runs carry the same run id
                "dagster_job": job_name,
                "mlflow.runName": run_label(job_name),
            }
            return client.create_run(experiment_id, tags=tags).info.run_id
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
    """One model's MLflow run (a child of its Dagster run's), written to by explicit run id."""

    client: MlflowClient
    run_id: str
    experiment_id: str
    ui_url: str
    parent_id: str

    @property
    def link(self) -> str:
        return f"{self.ui_url.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"

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
        self.client.update_run(self.parent_id, status="RUNNING")  # another model may have closed it
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
        self.client.set_terminated(self.parent_id, "FINISHED")
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
