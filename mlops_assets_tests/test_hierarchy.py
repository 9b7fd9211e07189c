"""The retail hierarchy (core/hierarchy.py) against hierarchicalforecast's own aggregation:
the same series, the same summing matrix, and each series starting at its first sale."""

import numpy as np
import pandas as pd
from hierarchicalforecast.utils import aggregate

from mlops_assets.core.hierarchy import Hierarchy

PERIODS = pd.date_range("2024-01-01", periods=20, freq="D")


def bottom_frame(seed: int = 0) -> pd.DataFrame:
    """Sparse sales of 6 products (2 categories) in 3 stores; P6 launches on day 12."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(1, 7):
        for s in ("S1", "S2", "S3"):
            start = 12 if p == 6 else 0
            for d in range(start, 20):
                if rng.random() < 0.4:
                    category = "A" if p <= 3 else "B"
                    rows.append((f"P{p}", s, category, PERIODS[d], float(rng.integers(1, 50))))
    return pd.DataFrame(rows, columns=["product_id", "store_id", "category", "period", "revenue"])


def library(frame: pd.DataFrame):
    """hierarchicalforecast.aggregate over the same lines, zero-filled from each bottom series'
    first sale (what Hierarchy.build does), with ids in Hierarchy's naming."""
    full = (
        frame.set_index(["product_id", "store_id", "period"])["revenue"]
        .unstack("period")
        .reindex(columns=pd.DatetimeIndex(PERIODS, name="period"))
        .fillna(0.0)
        .stack()
        .rename("y")
        .reset_index()
    )
    starts = frame.groupby(["product_id", "store_id"])["period"].min().rename("first").reset_index()
    full = full.merge(starts).query("period >= first").drop(columns="first")
    cats = frame.drop_duplicates("product_id").set_index("product_id")["category"]
    full = full.assign(total="total", category=full["product_id"].map(cats), ds=full["period"])
    full = full.assign(
        store="store=" + full["store_id"], category="category=" + full["category"],
        product="product=" + full["product_id"],
    )  # fmt: skip
    spec = [["total"], ["total", "store"], ["total", "category"], ["total", "category", "product"],
            ["total", "category", "product", "store"]]  # fmt: skip
    Y, S, tags = aggregate(full[["total", "store", "category", "product", "ds", "y"]], spec)
    return Y, S, tags


def canonical(uid: str) -> str:
    """The library's id ('total/category=A/product=P1/store=S1') in Hierarchy's naming."""
    parts = uid.split("/")
    if parts == ["total"]:
        return "total"
    parts = parts[1:]
    if len(parts) == 3:
        return f"{parts[1]}/{parts[2]}"
    return parts[-1]


def test_the_hierarchy_equals_hierarchicalforecasts_aggregation():
    frame = bottom_frame()
    h = Hierarchy.build(frame, PERIODS)
    Y, S, _ = library(frame)
    Y = Y.assign(unique_id=Y["unique_id"].map(canonical))
    assert set(Y["unique_id"]) == set(h.ids) and len(h.ids) == 1 + 3 + 2 + 6 + 18
    ours = h.long()
    merged = ours.merge(Y, on=["unique_id", "ds"], how="outer", suffixes=("", "_lib"), indicator=True)
    assert (merged["_merge"] == "both").all()  # the same (series, period) pairs: the same starts
    np.testing.assert_allclose(merged["y"], merged["y_lib"])
    lib_S = S.assign(unique_id=S["unique_id"].map(canonical)).set_index("unique_id")
    lib_S.columns = [canonical(c) for c in lib_S.columns]
    bottom = list(h.ids[h.rows("product_store")])
    np.testing.assert_array_equal(h.S.toarray(), lib_S.loc[list(h.ids), bottom].to_numpy())
    # a launch mid-window: P6's series start on day 12, and so does the product's
    assert h.starts[list(h.ids).index("product=P6")] >= 12
    assert (h.levels[-18:] == "product_store").all()  # bottom rows last
