"""Incremental snapshots of the offline store: each instant's rows carry a digest of the inputs
its features read, and a refresh computes only the instants whose digest changed (spread over
worker processes), reusing the stored rows of the others."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_assets.core.feature_registry import AS_OF, group_version
from mlops_assets.core.feature_store import TABLES, Sources
from mlops_assets.core.schemas import TEXT
from mlops_assets.core.warehouse import read_table

DIGEST = "inputs_digest"  # snapshot column: the digest of the inputs it was computed from


def digests(sources: Sources, group: str, dates: list[pd.Timestamp]) -> list[str]:
    """Per instant, a digest of everything the group's features as of it read: the lines
    strictly before it (their count and the order-free sum of their row hashes), the
    catalog, the inventory snapshots before it (products), and the feature version. Equal
    digests mean equal features, so a stored snapshot with the same digest is reused."""
    parts = [_cumulative(sources.transactions, "order_ts", dates)]
    if sources.products is not None:
        parts.append([_table_hash(sources.products)] * len(dates))
    if group == "product" and sources.inventory is not None:
        parts.append(_cumulative(sources.inventory, "snapshot_date", dates))
    version = group_version(group)
    return [":".join([version, *p]) for p in zip(*parts, strict=True)]


def _row_hashes(frame: pd.DataFrame) -> np.ndarray:
    return pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)


def _table_hash(frame: pd.DataFrame) -> str:
    return f"{len(frame)}-{int(_row_hashes(frame).sum(dtype=np.uint64)):x}"


def _cumulative(frame: pd.DataFrame, ts: str, dates: list[pd.Timestamp]) -> list[str]:
    """For each instant, count and hash-sum of the rows with `ts` strictly before it."""
    order = np.argsort(frame[ts].to_numpy(), kind="stable")
    stamps = frame[ts].to_numpy()[order]
    sums = np.concatenate([[0], np.cumsum(_row_hashes(frame)[order], dtype=np.uint64)]).astype(np.uint64)
    ends = np.searchsorted(stamps, np.asarray(dates, dtype=stamps.dtype), side="left")
    return [f"{int(k)}-{int(sums[k]):x}" for k in ends]


_WORKER_SOURCES: Sources | None = None


def _init_worker(sources: Sources) -> None:
    global _WORKER_SOURCES
    from mlops_assets.core.forecasting import single_threaded

    single_threaded()
    _WORKER_SOURCES = sources


def _snapshot_in_worker(args: tuple[str, pd.Timestamp]) -> pd.DataFrame:
    return _WORKER_SOURCES.snapshot(*args)


@dataclass
class Refresh:
    table: pd.DataFrame
    reused: list[pd.Timestamp]
    computed: list[pd.Timestamp]


def refresh_snapshots(
    sources: Sources,
    group: str,
    dates: list[pd.Timestamp],
    previous: pd.DataFrame | None = None,
    workers: int = 1,
) -> Refresh:
    """The snapshots as of `dates`, each stamped with the digest of its inputs. An instant whose
    digest matches a stored snapshot (`previous`) is reused as stored; only the others are
    computed, spread over `workers` processes when there are several."""
    stamps = dict(zip(dates, digests(sources, group, dates), strict=True))
    kept: dict[pd.Timestamp, pd.DataFrame] = {}
    if previous is not None and DIGEST in previous.columns and len(previous):
        for when, part in previous.groupby(AS_OF, sort=False):
            when = pd.Timestamp(when)
            if when in stamps and (part[DIGEST] == stamps[when]).all():
                kept[when] = part
    todo = [d for d in dates if d not in kept]
    if todo:  # once, before the workers copy the sources
        sources.line_codes()
        if group == "customer":
            sources.purchase_days()
    if workers > 1 and len(todo) >= 2 * workers:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(sources,)) as pool:
            fresh = list(pool.map(_snapshot_in_worker, [(group, d) for d in todo], chunksize=4))
    else:
        fresh = [sources.snapshot(group, d) for d in todo]
    for when, table in zip(todo, fresh, strict=True):
        kept[when] = table.assign(**{DIGEST: pd.Series(stamps[when], index=table.index, dtype=TEXT)})
    frames = [kept[d] for d in dates]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(table) and todo:  # stored snapshots come back with the warehouse's dtypes: match fresh ones
        table = table.astype(kept[todo[0]].dtypes.to_dict())
    return Refresh(table, [d for d in dates if d not in todo], todo)


def stored_snapshots(database: str | Path, group: str) -> tuple[pd.DataFrame | None, str]:
    """The group's snapshot table as the warehouse holds it, and why it could not be read when
    it could not (no warehouse yet, no table, the file locked by another writer): then every
    instant is computed, which is always correct, only slower."""
    if not Path(database).exists():
        return None, "no warehouse yet"
    try:
        table = read_table(database, TABLES[group][1])
    except Exception as exc:  # a lock held by another process: compute instead of waiting
        return None, f"stored snapshots unreadable ({type(exc).__name__}: {exc})"[:300]
    return table, "" if table is not None else "no stored snapshots yet"
