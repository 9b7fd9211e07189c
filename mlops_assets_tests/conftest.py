"""Shared fixtures: small generated data directories and a helper to run the graph."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
import yaml

from mlops_assets.assets.partitions import partition_key
from mlops_assets.definitions import build_definitions
from mlops_assets.sample_data.__main__ import main as generate_cli
from mlops_assets.settings import load_settings

SMALL = {"lines": 6000, "start": "2023-01-01", "end": "2023-03-31"}


def pytest_configure(config) -> None:
    """Under pytest-xdist each of the two workers gets one BLAS / OpenMP thread (and so do the
    processes it starts): two workers with a thread per core each would oversubscribe the cores
    and spin-wait, several times slower than one worker."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = "1"
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)


@pytest.fixture(autouse=True)
def _fresh_definitions_state():
    """Each test loads definitions under an instance of its own. Dagster keeps the instance a
    definitions load reads its state from in a context variable that an instance sets when
    entered; one a finished test left behind (restored after its instance was gone) made later
    `Definitions` loads on the same xdist worker fail with "Attempted to resolve undefined
    DagsterInstance weakref" (24 tests in one CI run). An entered ephemeral instance (no state
    storage) shadows it for the test."""
    with dg.DagsterInstance.ephemeral():
        yield


def generate_small(out: Path) -> Path:
    """The small generated sample (3 months, 6k lines) in `out`, its forecast levels the top ones."""
    generate_cli(
        ["--lines", str(SMALL["lines"]), "--seed", "3", "--out", str(out),
         "--start", SMALL["start"], "--end", SMALL["end"]]
    )  # fmt: skip
    # three months are too short for the catalog's backtest (four folds of 28 days, and four
    # weeks to fit on: it says so and fails); the catalog's tests generate longer data
    edit_sources(out, lambda s: s["forecast"].update(levels=["total", "store", "category"]))
    return out


@pytest.fixture(scope="session")
def _small_template(tmp_path_factory) -> Path:
    return generate_small(tmp_path_factory.mktemp("small_template"))


@pytest.fixture
def small_data_dir(_small_template, tmp_path) -> Path:
    """A private copy of a small generated sample (3 months, 6k lines)."""
    target = tmp_path / "data"
    shutil.copytree(_small_template, target)
    return target


@pytest.fixture(scope="session")
def small_lines(_small_template) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Silver lines, catalog and inventory of the small sample, as the assets would see them."""
    from mlops_assets.assets.ingestion import _gates, read_and_audit
    from mlops_assets.assets.partitions import window_of
    from mlops_assets.core import quality
    from mlops_assets.core.schemas import PARTITION_COLUMN

    settings = load_settings(_small_template)
    frames = {
        n: read_and_audit(settings, n, _gates(f"bronze_{n}"))[1]
        for n in ("transactions", "products", "inventory")
    }
    bronze = frames["transactions"]
    window = window_of(settings).bounds
    bronze[PARTITION_COLUMN] = quality.attribute_partitions(bronze, window)
    silver = quality.split_transactions(bronze, window, pd.Timestamp.now(), frames["products"]).silver
    return silver, frames["products"], frames["inventory"]


def edit_sources(data_dir: Path, change) -> None:
    spec = yaml.safe_load((data_dir / "sources.yaml").read_text())
    change(spec)
    (data_dir / "sources.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def run_graph(
    data_dir: Path, start: str, end: str, instance=None, selection=None
) -> dg.ExecuteInProcessResult:
    """Materialize the graph (or a selection) over the partitions that hold the days start..end
    (ISO dates), in process."""
    defs = build_definitions(load_settings(data_dir))
    job = defs.resolve_implicit_global_asset_job_def()
    tags = {
        "dagster/asset_partition_range_start": partition_key(start),
        "dagster/asset_partition_range_end": partition_key(end),
    }
    return job.execute_in_process(
        instance=instance or dg.DagsterInstance.ephemeral(),
        tags=tags,
        raise_on_error=False,
        asset_selection=selection,
    )


def group_keys(data_dir: Path, *groups: str) -> list[dg.AssetKey]:
    """The asset keys of some groups, to run only the part of the graph a test is about."""
    graph = build_definitions(load_settings(data_dir)).resolve_asset_graph()
    return sorted(dg.AssetSelection.groups(*groups).resolve(graph), key=lambda k: k.to_user_string())


INGESTION = ("bronze", "silver", "quality")


def forecasting_keys(data_dir: Path) -> list[dg.AssetKey]:
    """Ingestion and the forecasting group (with product_features, its drift snapshot): what a
    forecasting test needs, without training the other models."""
    return [*group_keys(data_dir, *INGESTION, "forecasting"), dg.AssetKey("product_features")]


def feature_keys(data_dir: Path) -> list[dg.AssetKey]:
    """Ingestion and the two feature tables."""
    return [
        *group_keys(data_dir, *INGESTION),
        dg.AssetKey("customer_features"),
        dg.AssetKey("product_features"),
    ]


def read_table(data_dir: Path, table: str) -> pd.DataFrame:
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        return con.sql(f"select * from {table}").df()


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def rewrite_transactions(data_dir: Path, change) -> None:
    """Rewrite the data directory's raw/transactions.csv.gz through `change` (a frame of text)."""
    import gzip

    path = data_dir / "raw/transactions.csv.gz"
    frame = change(pd.read_csv(path, dtype=str))
    with gzip.open(path, "wt") as fh:
        frame.to_csv(fh, index=False)
