"""The model registry: MLflow registered models with the aliases `champion` and `challenger`
(stages are deprecated), version tags for every decision, and an audit log.

Promotion is atomic: the champion is read, compared and replaced under one lock, so two
training runs racing can neither leave two champions (an alias names one version anyway) nor
a champion that never faced the one it replaced. The lock is a file beside the tracking store
(`<data dir>/mlflow/registry.lock`), good for every process sharing the data directory; with a
shared tracking server, point `lock_file` at shared storage.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pandas as pd
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.exceptions import MlflowException
from pydantic import Field

from mlops_assets.core import model_flavors
from mlops_assets.core.promotion import Decision
from mlops_assets.resources.mlflow_store import seed_sqlite_store

CHAMPION, CHALLENGER = "champion", "challenger"
REFERENCE = "reference"  # artifact folder of the training-data snapshots drift is measured against
AUDIT_COLUMNS = ["time", "model", "version", "event", "dagster_run_id", "reason", "details"]


class ModelRegistry(dg.ConfigurableResource):
    """Registration, promotion, rollback and the audit trail over MLflow's model registry."""

    tracking_uri: str = Field(description="MLflow tracking (and registry) URI.")
    lock_file: str = Field(description="File locked around every champion change.")
    audit_file: str = Field(
        description="JSON lines: one event per registration, promotion, rejection, rollback."
    )

    @property
    def client(self) -> MlflowClient:
        seed_sqlite_store(self.tracking_uri)
        return MlflowClient(self.tracking_uri, registry_uri=self.tracking_uri)

    @contextmanager
    def locked(self) -> Iterator[None]:
        Path(self.lock_file).parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_file, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def register(self, name: str, run_id: str, model_path: str, tags: dict, dagster_run_id: str) -> str:
        """A new version of `name` from the run's artifact folder `model_path`, aliased challenger."""
        client = self.client
        with contextlib.suppress(MlflowException):  # exists, or another process just created it
            client.create_registered_model(name)
        source = f"{client.get_run(run_id).info.artifact_uri}/{model_path}"
        version = client.create_model_version(
            name, source, run_id=run_id, tags={k: str(v) for k, v in tags.items()}
        ).version
        client.set_registered_model_alias(name, CHALLENGER, version)
        self.record(name, version, "registration", dagster_run_id, f"trained in MLflow run {run_id}", tags)
        return str(version)

    def champion(self, name: str):
        """The champion ModelVersion, or None before the first promotion."""
        try:
            return self.client.get_model_version_by_alias(name, CHAMPION)
        except MlflowException:
            return None

    def promote(
        self, name: str, version: str, decide: Callable[[object], Decision], dagster_run_id: str
    ) -> Decision:
        """Under the lock: read the champion, let `decide(champion or None)` compare, and move
        the alias only when it says so. Every outcome is tagged on the version and audited."""
        with self.locked():
            current = self.champion(name)
            decision = decide(current)
            stats = {k: round(float(v), 6) for k, v in decision.stats.items()}
            previous = str(current.version) if current is not None else ""
            client = self.client
            client.set_model_version_tag(
                name, version, "decision", "promoted" if decision.promote else "rejected"
            )
            client.set_model_version_tag(name, version, "decision_reason", decision.reason[:5000])
            client.set_model_version_tag(name, version, "compared_with", previous or "none")
            for key, value in stats.items():
                client.set_model_version_tag(name, version, f"stat.{key}", str(value))
            if decision.promote:
                client.set_model_version_tag(name, version, "previous_champion", previous or "none")
                client.set_registered_model_alias(name, CHAMPION, version)
            event = "promotion" if decision.promote else "rejection"
            self.record(
                name, version, event, dagster_run_id, decision.reason, {"compared_with": previous, **stats}
            )
            return decision

    def reject(self, name: str, reason: str, dagster_run_id: str, details: dict | None = None) -> None:
        """A training that did not get as far as registration (a failed gate)."""
        self.record(name, "", "rejection", dagster_run_id, reason, details or {})

    def rollback(self, name: str, version: str | None, dagster_run_id: str) -> str:
        """Move champion back to `version`, or to the version the current champion replaced."""
        with self.locked():
            current = self.champion(name)
            if current is None:
                models = sorted(m.name for m in self.client.search_registered_models())
                if name not in models:
                    raise ValueError(
                        f"{name} is not a registered model (registered: {', '.join(models) or 'none'})"
                    )
                raise ValueError(f"{name} has no champion to roll back: no version was ever promoted")
            current_version = str(current.version)
            target = str(version or current.tags.get("previous_champion", "none"))
            if target in ("none", ""):
                raise ValueError(f"{name} v{current_version} replaced no earlier champion: name a version")
            if target == current_version:
                raise ValueError(f"{name} v{target} is already the champion: nothing to roll back")
            try:
                self.client.get_model_version(name, target)
            except MlflowException:
                known = sorted(int(v.version) for v in self.client.search_model_versions(f"name='{name}'"))
                raise ValueError(
                    f"{name} has no version {target} to roll back to (registered: "
                    f"{', '.join(map(str, known))})"
                ) from None
            self.client.set_registered_model_alias(name, CHAMPION, target)
            self.client.set_model_version_tag(name, target, "rolled_back_from", current_version)
            reason = f"champion moved back from v{current_version} to v{target}"
            self.record(name, target, "rollback", dagster_run_id, reason, {"from_version": current_version})
            return str(target)

    def load(self, name: str, alias: str = CHAMPION, version: str | None = None):
        """(project object, ModelVersion) of the aliased or numbered version: the object the
        training asset saved, so scoring uses exactly what was trained."""
        client = self.client
        mv = (
            client.get_model_version(name, version)
            if version
            else client.get_model_version_by_alias(name, alias)
        )
        with tempfile.TemporaryDirectory() as tmp:
            local = download_artifacts(artifact_uri=mv.source, dst_path=tmp, tracking_uri=self.tracking_uri)
            return model_flavors.load(Path(local)), mv

    def snapshot(self, mv, name: str, dataset: str) -> pd.DataFrame | None:
        """The snapshot of `dataset` the version `mv` was trained on
        (`<name>/reference/<dataset>.parquet` in its training run), or None when it stored none."""
        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = download_artifacts(
                    run_id=mv.run_id,
                    artifact_path=f"{name}/{REFERENCE}/{dataset}.parquet",
                    dst_path=tmp,
                    tracking_uri=self.tracking_uri,
                )
            except (MlflowException, OSError):
                return None
            return pd.read_parquet(local)

    def record(self, name: str, version, event: str, dagster_run_id: str, reason: str, details: dict) -> None:
        row = {
            "time": pd.Timestamp.now(tz="UTC").isoformat(),
            "model": name,
            "version": str(version),
            "event": event,
            "dagster_run_id": dagster_run_id,
            "reason": reason,
            "details": json.dumps(details, default=str, sort_keys=True),
        }
        Path(self.audit_file).parent.mkdir(parents=True, exist_ok=True)
        with open(self.audit_file, "a") as fh:  # one write per line: appends do not interleave
            fh.write(json.dumps(row) + "\n")
        if version:
            self.client.set_model_version_tag(name, str(version), f"audit.{event}", row["time"])

    @classmethod
    def of_data_dir(cls, data_dir: Path, tracking_uri) -> ModelRegistry:
        """The registry of a data directory: its lock and audit log under `<data dir>/mlflow/`."""
        folder = Path(data_dir) / "mlflow"
        return cls(
            tracking_uri=tracking_uri,
            lock_file=str(folder / "registry.lock"),
            audit_file=str(folder / "audit.jsonl"),
        )

    def audit_log(self) -> pd.DataFrame:
        path = Path(self.audit_file)
        if not path.is_file():
            return pd.DataFrame(columns=AUDIT_COLUMNS)
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return pd.DataFrame(rows, columns=AUDIT_COLUMNS)
