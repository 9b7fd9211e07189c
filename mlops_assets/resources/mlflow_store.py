"""A new SQLite MLflow store starts as a copy of an empty one that MLflow built.

MLflow builds a SQLite store's schema by replaying its alembic migrations, 3-5 s on a 2-core
machine, at the first use of every new store: each first build of a data directory, each test
that builds one. The first store built on a machine for an MLflow version is kept, without its
default experiment, in the user's cache (`MLOPS_CACHE_DIR`, else `~/.cache/mlops_assets`); later
new stores are copies of it. MLflow opens a copy as any store whose tables exist: it verifies
the schema revision, and adds its default experiment with the store's own artifact location.
Stores that already exist, and non-SQLite stores (a tracking server), are left alone.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import mlflow
from mlflow import MlflowClient

SQLITE = "sqlite:///"


def cache_dir() -> Path:
    if os.environ.get("MLOPS_CACHE_DIR"):
        return Path(os.environ["MLOPS_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlops_assets"


def empty_store() -> Path:
    """The empty store of this MLflow version, built by MLflow's own migrations the first time."""
    path = cache_dir() / f"mlflow-{mlflow.__version__}-empty.db"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    building = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    building.unlink(missing_ok=True)
    MlflowClient(f"{SQLITE}{building}").search_experiments()  # creates and migrates the schema
    with sqlite3.connect(building) as db:  # each copy gets its own, pointing at its artifacts
        db.execute("DELETE FROM experiments WHERE experiment_id = 0")
    db.close()
    os.replace(building, path)  # atomic: a concurrent builder's copy is as good
    return path


def seed_sqlite_store(uri: str) -> bool:
    """Create the SQLite store at `uri` from the empty store when it does not exist yet;
    True when it did so."""
    if not uri.startswith(SQLITE):
        return False
    target = Path(uri.removeprefix(SQLITE))
    if target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copyfile(empty_store(), staged)
    try:
        os.link(staged, target)  # never over a store another process created meanwhile
    except FileExistsError:
        return False
    finally:
        staged.unlink()
    return True
