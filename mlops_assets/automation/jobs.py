"""Jobs over the asset graph, and the registry's rollback and promotion from shadow."""

import dagster as dg
from mlflow.exceptions import MlflowException

from mlops_assets.core.promotion import Decision

# One retraining policy, three kinds of trigger that never overlap:
# - data: new_data_sensor (files) and daily_monitoring_schedule (the calendar, skipped when the
#   sensor already refreshed the day) run refresh_and_monitor_job;
# - models: weekly_retrain_schedule and the drift, performance and stale-model sensors start a
#   training job, each skipping while another training run is queued or running
#   (training_under_way);
# - what follows from those runs (features, sales series and monitoring after an ingestion run
#   that left them out; batch scores, cards and the audit log after a training) carries
#   AFTER_GATES, evaluated by automation_condition_sensor (running by default). A model's own
#   training is never started by a condition (TRAINING_CONDITION), so a daily refresh retrains
#   nothing.
AFTER_GATES = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
TRAINING_CONDITION = None
# the drift report follows new data and new champions, but does not wait for every model to
# have one: a model that never passed its gates leaves a note in the report, not a stalled
# monitor (a model's gates already decide whether it has a champion to compare with)
MODELS = dg.AssetSelection.assets("sales_forecaster", "customer_segmenter", "sales_anomaly_detector")
AFTER_GATES_ANY_CHAMPION = dg.AutomationCondition.eager().replace(
    "any_deps_missing", dg.AutomationCondition.any_deps_missing().ignore(MODELS)
) & dg.AutomationCondition.all_deps_blocking_checks_passed().ignore(MODELS)

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups("bronze", "silver", "quality"),
    description="Read the sources, split good lines from bad, report quality (a partition range per run).",
)

TRAINING = dg.AssetSelection.groups(
    "forecasting", "segmentation", "anomalies", "registry"
) | dg.AssetSelection.assets("clv_validation_report")

# why a retraining run started: the sensors and schedules set it; a run launched by hand from
# the UI or the CLI keeps the job's default, `manual`
RETRAIN_REASON = "mlops/retrain_reason"
# the tracking store, the warehouse file and the registry lock can be briefly busy: retry a
# failed step twice, 30 s then 60 s later, before the run fails (and the alert sensor reports it)
FLAKY = dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL)

train_models_job = dg.define_asset_job(
    "train_models_job",
    selection=TRAINING,
    description="Retrain every model from the current tables: each logs to one MLflow run, registers "
    "a challenger, and is promoted to champion only through its gates and comparison.",
    run_tags={RETRAIN_REASON: "manual"},
    op_retry_policy=FLAKY,
)

retrain_forecaster_job = dg.define_asset_job(
    "retrain_forecaster_job",
    selection=dg.AssetSelection.groups("forecasting") | dg.AssetSelection.assets("model_cards"),
    description="Retrain the sales forecaster (and re-issue forecasts from the champion) when its "
    "live accuracy degraded.",
    run_tags={RETRAIN_REASON: "manual"},
    op_retry_policy=FLAKY,
)

# with the serving group: the served inputs' drift and the shadow report read the prediction log
MONITORING = dg.AssetSelection.groups(
    "bronze", "silver", "quality", "monitoring", "serving"
) | dg.AssetSelection.assets("customer_features", "product_features", "sales_series")

refresh_and_monitor_job = dg.define_asset_job(
    "refresh_and_monitor_job",
    selection=MONITORING,
    description="Ingest new days (a partition range per run), rebuild the features and sales series, "
    "and measure drift against the champions' training data and forecast accuracy on arrived actuals.",
    op_retry_policy=FLAKY,
)

CHAMPION_OUTPUT_TAG = "mlops/champion_output"  # batch outputs scored by a registry champion
rescore_job = dg.define_asset_job(
    "rescore_job",
    selection=dg.AssetSelection.tag(CHAMPION_OUTPUT_TAG, "") | dg.AssetSelection.assets("model_cards"),
    description="Batch outputs from the current champions (after a rollback, say).",
)


class RollbackConfig(dg.Config):
    model_name: str  # sales_forecaster, customer_segmenter, sales_anomaly_detector, clv_model
    version: str | None = None  # None: the version the current champion replaced


@dg.op(required_resource_keys={"registry"})
def rollback_model(context: dg.OpExecutionContext, config: RollbackConfig) -> str:
    """Move `champion` back to the named version, or to the one the current champion replaced."""
    target = context.resources.registry.rollback(config.model_name, config.version, context.run.run_id)
    context.log.info(f"{config.model_name}: champion is now v{target}")
    return target


@dg.job(description="Roll a model's champion back to the previous (or a named) version; audited.")
def rollback_model_job():
    rollback_model()


class PromoteConfig(dg.Config):
    model_name: str
    # False: promote only when the shadow report (shadow_report, tagged shadow.* on the
    # challenger) recommends it; True: a person's decision, audited as such
    force: bool = False


def shadow_decision(challenger, force: bool) -> Decision:
    """Whether the challenger version (an MLflow ModelVersion) replaces the champion, from the
    shadow report's tags on it."""
    tags = challenger.tags
    said = tags.get("shadow.recommendation")
    if force:
        return Decision(True, f"promoted by hand (shadow report: {said or 'none'})")
    if said is None:
        return Decision(False, f"no shadow report for v{challenger.version}: serve it in shadow mode, "
                               "materialize shadow_report, or promote with force")  # fmt: skip
    stats = {k.removeprefix("shadow."): float(v) for k, v in tags.items()
             if k in ("shadow.p_value", "shadow.agreement", "shadow.actuals")}  # fmt: skip
    return Decision(said.startswith("promote"), f"shadow report: {said}", stats)


@dg.op(required_resource_keys={"registry"})
def promote_challenger(context: dg.OpExecutionContext, config: PromoteConfig) -> bool:
    """Make the model's `challenger` its champion when its shadow report says so (or by hand)."""
    registry = context.resources.registry
    try:
        challenger = registry.client.get_model_version_by_alias(config.model_name, "challenger")
    except MlflowException:
        raise ValueError(f"{config.model_name} has no challenger version to promote") from None
    champion = registry.champion(config.model_name)
    if champion is not None and champion.version == challenger.version:
        raise ValueError(f"{config.model_name} v{challenger.version} is already the champion")
    decision = registry.promote(
        config.model_name, str(challenger.version), lambda _: shadow_decision(challenger, config.force),
        context.run.run_id,
    )  # fmt: skip
    log = context.log.info if decision.promote else context.log.warning
    outcome = "promoted" if decision.promote else "kept as challenger"
    log(f"{config.model_name} v{challenger.version}: {outcome} ({decision.reason})")
    return decision.promote


@dg.job(description="Promote a model's challenger to champion on its shadow report's recommendation "
        "(or by hand, with force); audited.")  # fmt: skip
def promote_challenger_job():
    promote_challenger()


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[rollback_model_job, promote_challenger_job],
    request_job=rescore_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def rescore_after_rollback(context: dg.RunStatusSensorContext):
    """A successful rollback (or promotion from shadow) re-publishes the batch outputs from the
    champion it left."""
    return dg.RunRequest(run_key=context.dagster_run.run_id)


UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
TRAINING_JOBS = [train_models_job.name, retrain_forecaster_job.name]


def training_under_way(instance: dg.DagsterInstance) -> dg.DagsterRun | None:
    """A training run (either job) queued or running, which a new trigger would duplicate."""
    for job in TRAINING_JOBS:
        runs = instance.get_runs(dg.RunsFilter(job_name=job, statuses=UNFINISHED), limit=1)
        if runs:
            return runs[0]
    return None
