"""Digests of what features as of an instant read: equal digests mean equal features, so a
stored snapshot (core/snapshots.py) or a checkpoint of the customers' totals
(core/customer_checkpoint.py) computed from them still holds."""

from __future__ import annotations

import ibis
import ibis.expr.datatypes as dt
import numpy as np
import pandas as pd

from mlops_assets.core import engine
from mlops_assets.core.feature_registry import group_version

MOD = 2**64


def line_digests(lines: ibis.Table, dates: list[pd.Timestamp]) -> list[str]:
    """Per instant (a midnight): the count and the order-free sum of the row hashes of the lines
    strictly before it, from one pass that sums per day in the engine."""
    row = ibis.struct({c: lines[c] for c in lines.columns}).hash().cast(dt.Decimal(38, 0))
    per_day = lines.group_by(lines.order_ts.truncate("D").name("day")).aggregate(n=lines.count(), h=row.sum())
    per_day = engine.to_frame(per_day.order_by("day"))
    days = per_day["day"].astype("datetime64[ns]").to_numpy()
    counts = np.concatenate([[0], np.cumsum(per_day["n"].to_numpy(dtype=np.int64))])
    sums = [0]
    for h in per_day["h"]:  # exact integers: Python's, modulo 2**64
        sums.append((sums[-1] + int(h)) % MOD)
    ends = np.searchsorted(days, np.asarray(dates, dtype="datetime64[ns]"), side="left")
    return [f"{int(counts[k])}-{sums[k]:x}" for k in ends]


def _table_hash(frame: pd.DataFrame) -> str:
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)
    return f"{len(frame)}-{int(hashes.sum(dtype=np.uint64)):x}"


def _cumulative(frame: pd.DataFrame, ts: str, dates: list[pd.Timestamp]) -> list[str]:
    """For each instant, count and hash-sum of the rows with `ts` strictly before it."""
    order = np.argsort(frame[ts].to_numpy(), kind="stable")
    stamps = frame[ts].to_numpy()[order]
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)[order]
    sums = np.concatenate([[0], np.cumsum(hashes, dtype=np.uint64)]).astype(np.uint64)
    ends = np.searchsorted(stamps, np.asarray(dates, dtype=stamps.dtype), side="left")
    return [f"{int(k)}-{int(sums[k]):x}" for k in ends]


def digests(
    lines: ibis.Table, products: pd.DataFrame | None, inventory: pd.DataFrame | None, group: str, dates
) -> list[str]:
    """Per instant, a digest of everything the group's features as of it read: the lines
    strictly before it, the catalog, the inventory snapshots before it (products), and the
    feature version. Equal digests mean equal features, so a stored snapshot is kept."""
    parts = [line_digests(lines, dates)]
    if products is not None:
        parts.append([_table_hash(products)] * len(dates))
    if group == "product" and inventory is not None:
        parts.append(_cumulative(inventory, "snapshot_date", dates))
    version = group_version(group)
    return [":".join([version, *p]) for p in zip(*parts, strict=True)]
