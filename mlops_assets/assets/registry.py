"""Model governance as assets: the audit log of every registry decision, and a model card per
registered model (shown in the UI, logged to MLflow beside the version)."""

import json

import dagster as dg
import pandas as pd

from mlops_assets.assets._metadata import table_metadata
from mlops_assets.assets.partitions import SINGLE_RUN
from mlops_assets.automation.jobs import AFTER_GATES
from mlops_assets.core.model_cards import LIMITATIONS, model_card
from mlops_assets.resources.registry import ModelRegistry
from mlops_assets.settings import Settings

GROUP = "registry"
MODELS = ("sales_forecaster", "customer_segmenter", "sales_anomaly_detector", "clv_model")
TRAINING_ASSETS = (
    "sales_forecaster",
    "customer_segmenter",
    "sales_anomaly_detector",
    "clv_validation_report",
)
CATALOG = "catalog_forecaster"  # trained only when forecast.levels reach products (assets/catalog.py)


def models_of(settings: Settings) -> tuple[str, ...]:
    return MODELS + ((CATALOG,) if settings.forecast.catalog else ())


def training_assets_of(settings: Settings) -> tuple[str, ...]:
    return TRAINING_ASSETS + ((CATALOG,) if settings.forecast.catalog else ())


def build_registry_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    models = models_of(settings)

    @dg.asset(
        group_name=GROUP,
        kinds={"mlflow", "duckdb"},
        metadata={"schema": GROUP},
        deps=list(training_assets_of(settings)),
        automation_condition=AFTER_GATES,
        backfill_policy=SINGLE_RUN,
    )
    def model_audit_log(registry: ModelRegistry) -> dg.Output:
        """Every registration, promotion, rejection and rollback: time, model, version, Dagster run,
        reason, and the metrics and test statistics behind it (also tagged on the MLflow versions)."""
        table = registry.audit_log()
        counts = table.groupby(["model", "event"]).size().rename("events").reset_index()
        return dg.Output(
            table,
            metadata={
                "events": len(table),
                "by_model_and_event": table_metadata(counts, 40),
                "latest": table_metadata(table.tail(15).iloc[::-1], 15),
            },
        )

    @dg.asset(
        group_name=GROUP,
        kinds={"mlflow", "duckdb"},
        metadata={"schema": GROUP},
        deps=[model_audit_log],
        automation_condition=AFTER_GATES,
        backfill_policy=SINGLE_RUN,
    )
    def model_cards(registry: ModelRegistry) -> dg.Output:
        """A markdown card per registered model's champion: data window, features, metrics, the
        promotion test, limitations and lineage. Each card is logged to the version's MLflow run."""
        client = registry.client
        rows, shown = [], {}
        for name in models:
            champion = registry.champion(name)
            if champion is None:
                continue
            run = client.get_run(champion.run_id)
            card = model_card(name, champion, run, LIMITATIONS[name])
            client.log_text(champion.run_id, card, f"{name}/model_card_v{champion.version}.md")
            rows.append({"model": name, "version": str(champion.version), "card": card})
            shown[f"card_{name}"] = dg.MetadataValue.md(card)
        table = pd.DataFrame(rows, columns=["model", "version", "card"])
        return dg.Output(
            table,
            metadata={
                "models": len(table),
                "champions": json.dumps(dict(zip(table.model, table.version, strict=True))),
                **shown,
            },
        )

    return [model_audit_log, model_cards]
