"""What every training asset does once its gates pass: log the run to MLflow, register a new
version (alias challenger), and let the registry decide under its lock whether it becomes
champion. Returns the metadata the asset shows: the MLflow link, version and decision."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from mlops_assets.assets.partitions import SINGLE_RUN
from mlops_assets.automation.jobs import AFTER_GATES, CHAMPION_OUTPUT_TAG
from mlops_assets.core import model_flavors
from mlops_assets.core.promotion import Decision
from mlops_assets.resources.registry import REFERENCE, ModelRegistry
from mlops_assets.resources.tracking import MlflowTracking

# the training assets reach tracking (MlflowTracking) and the registry through context.resources
TRACKED = {"required_resource_keys": {"mlflow", "registry"}}


def champion_output(group: str) -> dict:
    """Decorator arguments of a batch output built from a model's registry champion, which it
    takes as an input of the model asset's name (RegistryModelIOManager loads the champion)."""
    return {
        "group_name": group,
        "kinds": {"pandas", "duckdb"},
        "metadata": {"schema": group},
        "automation_condition": AFTER_GATES,
        "backfill_policy": SINGLE_RUN,
        "code_version": "2",
        "tags": {CHAMPION_OUTPUT_TAG: ""},  # what rescore_job re-publishes after a rollback
    }


def first_or(compare: Callable[[object], Decision]) -> Callable[[object], Decision]:
    """The first version becomes champion once its gates passed; later ones are compared."""

    def decide(champion) -> Decision:
        if champion is None:
            return Decision(True, "first version: its gates passed, so it becomes champion")
        return compare(champion)

    return decide


def govern(
    context: dg.AssetExecutionContext,
    name: str,
    obj,
    decide: Callable[[object], Decision],
    params: dict,
    metrics: dict[str, float],
    data: pd.DataFrame,
    artifacts: dict | None = None,
    sklearn_model=None,
    reference: dict[str, pd.DataFrame] | None = None,
    asset: str | None = None,
    example: pd.DataFrame | None = None,
) -> dict:
    """`reference`: snapshots of the training data, stored with the version so that drift is
    later measured against what the champion was trained on. `asset`: the asset whose code
    version the model carries (default: the model's own name). `example`: a few rows of what
    the model scores, for its signature."""
    started = time.perf_counter()
    registry: ModelRegistry = context.resources.registry
    tracking: MlflowTracking = context.resources.mlflow
    run = tracking.training_run(context, name)
    asset = asset or name
    code_version = context.assets_def.code_versions_by_key.get(dg.AssetKey(asset))
    if code_version is None:  # the registry would record "none": a definition error, said early
        raise ValueError(
            f"{asset} has no code_version: the model {name} could not record which code trained it"
        )
    with tempfile.TemporaryDirectory() as tmp:
        folder = model_flavors.save(obj, Path(tmp) / "model", sklearn_model, example)
        run.client.log_artifacts(run.run_id, str(folder), f"{name}/model")
    snapshots = {f"{REFERENCE}/{k}.parquet": v for k, v in (reference or {}).items()}
    meta = run.log(name, params, metrics, data, code_version, {**(artifacts or {}), **snapshots})
    version = registry.register(
        name,
        run.run_id,
        f"{name}/model",
        {
            "dagster_run_id": context.run.run_id,
            "asset_key": name,
            "code_version": code_version,
            "training_data_hash": meta["training_data_hash"],
            "training_rows": len(data),
        },
        context.run.run_id,
    )
    decision = registry.promote(name, version, decide, context.run.run_id)
    level = "info" if decision.promote else "warning"
    getattr(context.log, level)(
        f"{name} v{version}: {'promoted' if decision.promote else 'rejected'}: {decision.reason} "
        f"(logged, registered and decided in {time.perf_counter() - started:.1f} s)"
    )
    floats = {f"promotion_{k}": float(v) for k, v in decision.stats.items() if np.isfinite(v)}
    return {
        **meta,
        "model_version": version,
        "promoted": decision.promote,
        "promotion_decision": decision.reason,
        **floats,
    }


def not_registered(context: dg.AssetExecutionContext, name: str, failed: list) -> None:
    """A training stopped by its gates is audited as a rejection, with the gates' sentences."""
    reason = "gates failed: " + "; ".join(c.description for c in failed)
    context.resources.registry.reject(
        name, reason, context.run.run_id, {"failed_checks": [c.check_name for c in failed]}
    )
