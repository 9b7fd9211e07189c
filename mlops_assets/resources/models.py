"""Models move between assets through the MLflow model registry, their one source of truth.

A training asset registers its model (`_governance.govern`: MLflow run, artifact, version,
promotion decision) and emits it as its output; `RegistryModelIOManager.handle_output` checks
that the output is the version this run registered and records its `models:/` URI, writing no
second copy. A downstream asset that names the model as an input receives a `Champion`: the
version the registry's `champion` alias points at (or, by the input's metadata, another alias),
so batch scores and monitoring follow a promotion or a rollback, never whatever trained last.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import dagster as dg
import pandas as pd
from mlflow.exceptions import MlflowException

from mlops_assets.resources.registry import CHAMPION, ModelRegistry

VERSION_KEY = "model_version"  # the output metadata key govern() fills
ALIAS_KEY = "alias"  # input metadata: which alias to load (default champion)
OPTIONAL_KEY = "optional"  # input metadata: None instead of an error when no version holds the alias


@dataclass
class Champion:
    """A registered version as an input: its number, tags and run (`version`, an MLflow
    ModelVersion), the project object it was trained as (`model`, downloaded on first use) and
    the training-data snapshots stored with it (`reference`)."""

    name: str
    version: object  # mlflow.entities.model_registry.ModelVersion
    registry: ModelRegistry = field(repr=False)

    @property
    def number(self) -> str:
        return str(self.version.version)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.number}"

    @cached_property
    def model(self):
        return self.registry.load(self.name, version=self.number)[0]

    def reference(self, dataset: str) -> pd.DataFrame | None:
        """The snapshot of `dataset` this version was trained on, or None if it stored none."""
        return self.registry.snapshot(self.version, self.name, dataset)


class RegistryModelIOManager(dg.ConfigurableIOManager):
    """The IO manager of model assets: outputs are registered versions, inputs are the aliased
    (champion) version. The asset key's last part is the registered model's name."""

    registry: ModelRegistry

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        name = context.asset_key.path[-1]
        raw = context.output_metadata.get(VERSION_KEY)
        version = str(getattr(raw, "value", raw)) if raw is not None else None
        if version is None:
            raise ValueError(
                f"{name}: a model output must carry the registered version in its metadata "
                f"('{VERSION_KEY}', from govern()); an unregistered model would have no place in the registry"
            )
        try:
            mv = self.registry.client.get_model_version(name, version)
        except MlflowException as exc:
            raise ValueError(f"{name}: the output names version {version}, which the registry lacks") from exc
        if mv.tags.get("dagster_run_id") != context.run_id:
            raise ValueError(
                f"{name} v{version} was registered by Dagster run {mv.tags.get('dagster_run_id')}, "
                f"not by this run ({context.run_id}): the output is not the model this run trained"
            )
        champion = self.registry.champion(name)
        context.add_output_metadata(
            {
                "model_uri": f"models:/{name}/{version}",
                "champion_now": str(champion.version) if champion is not None else "none",
            }
        )

    def load_input(self, context: dg.InputContext) -> Champion | None:
        name = context.asset_key.path[-1]
        meta = context.definition_metadata or {}
        alias = meta.get(ALIAS_KEY, CHAMPION)
        try:
            mv = self.registry.client.get_model_version_by_alias(name, alias)
        except MlflowException:
            if meta.get(OPTIONAL_KEY):
                return None
            raise ValueError(
                f"{name} has no '{alias}' version in the registry at {self.registry.tracking_uri}: "
                f"materialize {name} first (a version becomes champion once its gates pass)"
            ) from None
        context.add_input_metadata({"model_uri": f"models:/{name}/{mv.version}", "alias": alias})
        return Champion(name, mv, self.registry)
