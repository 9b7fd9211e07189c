"""Models move between assets through the registry (RegistryModelIOManager), against a real
MLflow store: an output must be the version its run registered, and an input is the version
the alias names now (champion by default), so a promotion, a rejection or a rollback decides
what downstream assets score with; and rollbacks, to the previous or a named version, and the
sentences that refuse one."""

import tempfile
from pathlib import Path

import dagster as dg
import pytest
from mlflow import MlflowClient

from mlops_assets.automation.jobs import rollback_model_job
from mlops_assets.core import model_flavors
from mlops_assets.core.promotion import Decision
from mlops_assets.resources.models import ALIAS_KEY, OPTIONAL_KEY, Champion, RegistryModelIOManager
from mlops_assets.resources.registry import ModelRegistry

NAME = "toy_model"


@pytest.fixture
def registry(tmp_path) -> ModelRegistry:
    return ModelRegistry(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        lock_file=str(tmp_path / "registry.lock"),
        audit_file=str(tmp_path / "audit.jsonl"),
    )


def register(registry: ModelRegistry, weights: list[int], dagster_run_id: str, promote: bool) -> str:
    """A version of the toy model trained in `dagster_run_id`, promoted or rejected."""
    client: MlflowClient = registry.client
    found = client.get_experiment_by_name("toy")
    artifacts = Path(registry.lock_file).parent / "artifacts"  # in the test's folder, not ./mlruns
    experiment = found or client.get_experiment(client.create_experiment("toy", artifacts.as_uri()))
    run = client.create_run(experiment.experiment_id)
    with tempfile.TemporaryDirectory() as tmp:
        folder = model_flavors.save({"weights": weights}, Path(tmp) / "model")
        client.log_artifacts(run.info.run_id, str(folder), f"{NAME}/model")
    version = registry.register(
        NAME, run.info.run_id, f"{NAME}/model", {"dagster_run_id": dagster_run_id}, dagster_run_id
    )
    registry.promote(NAME, version, lambda champion: Decision(promote, "test"), dagster_run_id)
    return version


def graph(weights: list[int], promote: bool, version_of=None, ins_meta: dict | None = None):
    """A training asset registering the toy model in its run, and a scorer taking it as input.
    `version_of(run_id)`: the version the output claims (default: the one just registered)."""

    @dg.asset(io_manager_key="model_io_manager", required_resource_keys={"registry"})
    def toy_model(context: dg.AssetExecutionContext):
        version = register(context.resources.registry, weights, context.run.run_id, promote)
        claimed = version if version_of is None else version_of(version)
        metadata = {} if claimed is None else {"model_version": claimed}
        return dg.Output({"weights": weights}, metadata=metadata)

    @dg.asset(ins={NAME: dg.AssetIn(metadata=ins_meta or {})})
    def toy_scores(toy_model: Champion | None) -> dict:
        if toy_model is None:
            return {"version": None}
        return {"version": toy_model.number, "weights": toy_model.model["weights"], "uri": toy_model.uri}

    return toy_model, toy_scores


def materialize(registry, assets, selection=None):
    return dg.materialize(
        assets,
        selection=selection,
        resources={"registry": registry, "model_io_manager": RegistryModelIOManager(registry=registry)},
        raise_on_error=False,
    )


def scores(result) -> dict:
    return result.output_for_node("toy_scores")


def test_downstream_scores_with_the_champion_not_the_last_trained(registry):
    first = materialize(registry, graph([1, 2], promote=True))
    v1 = {"version": "1", "weights": [1, 2], "uri": "models:/toy_model/1"}
    assert first.success and scores(first) == v1
    meta = first.asset_materializations_for_node("toy_model")[0].metadata
    assert meta["model_uri"].value == "models:/toy_model/1" and meta["champion_now"].value == "1"

    # v2 is registered and rejected: the scorer still gets v1's weights
    second = materialize(registry, graph([9, 9], promote=False))
    assert second.success and scores(second)["version"] == "1" and scores(second)["weights"] == [1, 2]
    meta = second.asset_materializations_for_node("toy_model")[0].metadata
    assert meta["model_uri"].value == "models:/toy_model/2" and meta["champion_now"].value == "1"

    # an input asking for the challenger gets v2
    challenger = materialize(registry, graph([9, 9], promote=False, ins_meta={ALIAS_KEY: "challenger"}),
                             selection=["toy_scores"])  # fmt: skip
    assert challenger.success and scores(challenger)["weights"] == [9, 9]

    # after a rollback the scorer follows the alias
    materialize(registry, graph([5], promote=True))  # v3 champion
    registry.rollback(NAME, "1", "test")
    rescored = materialize(registry, graph([0], promote=True), selection=["toy_scores"])
    assert scores(rescored) == v1


def test_an_output_that_is_not_this_runs_registered_version_fails(registry):
    register(registry, [1], "an-earlier-run", promote=True)  # v1, from another run
    claims_v1 = materialize(registry, graph([2], promote=True, version_of=lambda v: "1"))
    assert not claims_v1.success
    error = claims_v1.get_step_failure_events()[0].event_specific_data.error.cause.message
    assert "toy_model v1 was registered by Dagster run an-earlier-run, not by this run" in error

    unregistered = materialize(registry, graph([3], promote=True, version_of=lambda v: None))
    error = unregistered.get_step_failure_events()[0].event_specific_data.error.cause.message
    assert "must carry the registered version in its metadata ('model_version'" in error

    missing = materialize(registry, graph([4], promote=True, version_of=lambda v: "99"))
    error = missing.get_step_failure_events()[0].event_specific_data.error.cause.message
    assert "names version 99, which the registry lacks" in error


def test_no_champion_is_an_error_unless_the_input_is_optional(registry):
    required = materialize(registry, graph([1], promote=True), selection=["toy_scores"])
    assert not required.success
    error = required.get_step_failure_events()[0].event_specific_data.error.cause.message
    assert "toy_model has no 'champion' version in the registry" in error and "materialize toy_model" in error

    optional = materialize(registry, graph([1], promote=True, ins_meta={OPTIONAL_KEY: True}), ["toy_scores"])
    assert optional.success and scores(optional) == {"version": None}


def test_rollback_to_a_named_version_and_its_error_paths(registry):
    def refused(version, match: str) -> None:
        before = (registry.champion(NAME).version if registry.champion(NAME) else None, len(audit()))
        with pytest.raises(ValueError, match=match):
            registry.rollback(NAME, version, "test")
        after = (registry.champion(NAME).version if registry.champion(NAME) else None, len(audit()))
        assert after == before  # a refused rollback moves nothing and audits nothing

    def audit():
        return registry.audit_log()

    with pytest.raises(ValueError, match=r"toy_model is not a registered model \(registered: none\)"):
        registry.rollback(NAME, None, "test")
    register(registry, [0], "r0", promote=False)  # v1: registered, never promoted
    refused(None, "toy_model has no champion to roll back: no version was ever promoted")
    for weights, run_id in (([1], "r1"), ([2], "r2"), ([3], "r3")):
        register(registry, weights, run_id, promote=True)  # v2, v3, v4: each replaced the one before
    refused("4", r"toy_model v4 is already the champion")
    refused("9", r"toy_model has no version 9 to roll back to \(registered: 1, 2, 3, 4\)")

    assert registry.rollback(NAME, "2", "test") == "2"  # a named version, past the previous one
    champion = registry.champion(NAME)
    assert str(champion.version) == "2" and champion.tags["rolled_back_from"] == "4"
    assert registry.load(NAME)[0] == {"weights": [1]}
    last = audit().iloc[-1]
    assert (last["event"], last["version"], last["reason"]) == (
        "rollback", "2", "champion moved back from v4 to v2"
    )  # fmt: skip
    # v2 was the first champion: it replaced nothing, so a rollback must name a version
    refused(None, "toy_model v2 replaced no earlier champion: name a version")
    assert registry.rollback(NAME, "1", "test") == "1"  # a never-promoted version, named by hand
    assert registry.load(NAME)[0] == {"weights": [0]}


def test_the_rollback_job_fails_with_the_registry_sentence(registry):
    register(registry, [1], "r1", promote=True)

    def job(config: dict):
        return rollback_model_job.execute_in_process(
            run_config={"ops": {"rollback_model": {"config": config}}},
            resources={"registry": registry},
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )

    typo = job({"model_name": "toy_modle"})
    assert not typo.success
    error = typo.get_step_failure_events()[0].event_specific_data.error.cause.message
    assert "toy_modle is not a registered model (registered: toy_model)" in error
    named = job({"model_name": NAME, "version": "7"})
    error = named.get_step_failure_events()[0].event_specific_data.error.cause.message
    assert "toy_model has no version 7 to roll back to (registered: 1)" in error
    assert str(registry.champion(NAME).version) == "1"
