"""The retail hierarchy as a summing matrix: every product in every store (the bottom series)
sums to its product, its store, its category and the total.

`Hierarchy.build` takes revenue per (product, store, period) and returns the series of every
level as one matrix (rows: series, columns: periods) with the sparse summing matrix S (rows:
all series, columns: bottom series; bottom rows last, as hierarchicalforecast expects) and the
rows of each level. Aggregating is one sparse product S @ bottom, which on 10,000 bottom series
takes a fraction of a second where `hierarchicalforecast.utils.aggregate` took about a minute
(pandas group-bys per level); the test checks both give the same series and matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

# top to bottom; product_store is always the bottom: stores and products only sum through it
LEVELS = ("total", "store", "category", "product", "product_store")
CATALOG_LEVELS = ("product", "product_store")


def series_id(level: str, key: str) -> str:
    if level == "total":
        return "total"
    if level == "product_store":
        product, store = key.split("|", 1)
        return f"product={product}/store={store}"
    return f"{level}={key}"


@dataclass
class Hierarchy:
    ids: np.ndarray  # series ids, top levels first, bottom rows last
    levels: np.ndarray  # the level of each row
    S: sparse.csr_matrix  # (series, bottom series)
    periods: pd.DatetimeIndex
    values: np.ndarray  # (series, periods) revenue; NaN before a series' first period
    starts: np.ndarray  # index of each series' first period (its first sale, or its children's)

    @property
    def n_bottom(self) -> int:
        return self.S.shape[1]

    def rows(self, level: str) -> np.ndarray:
        return np.flatnonzero(self.levels == level)

    def tags(self) -> dict[str, np.ndarray]:
        return {level: self.ids[self.rows(level)] for level in LEVELS if (self.levels == level).any()}

    def long(self, rows: np.ndarray | None = None) -> pd.DataFrame:
        """statsforecast's long frame (unique_id, ds, y) of some rows, each from its start."""
        rows = np.arange(len(self.ids)) if rows is None else np.asarray(rows)
        t = len(self.periods)
        lengths = t - self.starts[rows]
        col = np.concatenate([np.arange(s, t) for s in self.starts[rows]]) if len(rows) else np.array([], int)
        row = np.repeat(rows, lengths)
        return pd.DataFrame(
            {
                "unique_id": self.ids[row],
                "ds": self.periods[col],
                "y": self.values[row, col],
            }
        )

    @classmethod
    def build(cls, bottom: pd.DataFrame, periods: pd.DatetimeIndex) -> Hierarchy:
        """`bottom`: product_id, store_id, category, period, revenue (rows for days with sales;
        the rest are zero from a series' first period on)."""
        frame = bottom[bottom["period"].isin(periods)]
        pairs = frame[["product_id", "store_id"]].drop_duplicates().sort_values(["product_id", "store_id"])
        pairs = pairs.reset_index(drop=True)
        category = frame.drop_duplicates("product_id").set_index("product_id")["category"].astype(str)
        pair_code = pd.MultiIndex.from_frame(pairs).get_indexer(
            pd.MultiIndex.from_frame(frame[["product_id", "store_id"]])
        )
        t_code = periods.get_indexer(frame["period"])
        n_b, t = len(pairs), len(periods)
        values = np.zeros((n_b, t))
        np.add.at(values, (pair_code, t_code), frame["revenue"].to_numpy(dtype=float))
        first = np.full(n_b, t)
        np.minimum.at(first, pair_code, t_code)

        products = pairs["product_id"].astype(str).to_numpy()
        stores = pairs["store_id"].astype(str).to_numpy()
        cats = category.reindex(products).to_numpy()
        groups = {
            "total": np.zeros(n_b, dtype=int),
            "store": None,
            "category": None,
            "product": None,
        }
        keys: dict[str, np.ndarray] = {"total": np.array(["total"])}
        for level, labels in (("store", stores), ("category", cats), ("product", products)):
            uniq, codes = np.unique(labels, return_inverse=True)
            groups[level], keys[level] = codes, uniq
        blocks, ids, lv = [], [], []
        for level in LEVELS[:-1]:
            k = len(keys[level])
            blocks.append(sparse.csr_matrix((np.ones(n_b), (groups[level], np.arange(n_b))), shape=(k, n_b)))
            ids += [series_id(level, str(key)) for key in keys[level]]
            lv += [level] * k
        blocks.append(sparse.identity(n_b, format="csr"))
        ids += [series_id("product_store", f"{p}|{s}") for p, s in zip(products, stores, strict=True)]
        lv += ["product_store"] * n_b
        S = sparse.vstack(blocks, format="csr")
        starts = np.asarray(
            [first[S.indices[S.indptr[i] : S.indptr[i + 1]]].min() for i in range(S.shape[0])]
        )
        all_values = np.asarray(S @ values)
        all_values[np.arange(t)[None, :] < starts[:, None]] = np.nan
        return cls(np.array(ids), np.array(lv), S, periods, all_values, starts)


def hierarchy_of(bottom: pd.DataFrame, freq: str) -> Hierarchy:
    """Every level of the catalog's bottom series (core/series.bottom_series) over the periods
    from the first to the last one with lines."""
    periods = pd.to_datetime(bottom["period"])
    step = "D" if freq == "D" else "7D"  # weeks start on whichever weekday the series' periods do
    return Hierarchy.build(
        bottom.assign(period=periods), pd.date_range(periods.min(), periods.max(), freq=step)
    )
