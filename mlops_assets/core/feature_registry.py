"""The one registry of features: name, group, description, dtype, version.

A changed definition bumps its `version`; a group's version string is a hash of its features'
(name, dtype, version), stored beside every snapshot row, so retrieval never mixes values of
an old definition with a new one (snapshots of another version are recomputed, not served).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import pandas as pd
import pyarrow as pa

ENTITY = {"customer": "customer_id", "product": "product_id"}
AS_OF = "feature_as_of"  # the instant the values hold for: data strictly before it was used
VERSION = "feature_version"


@dataclass(frozen=True)
class FeatureDef:
    name: str
    group: str  # customer | product
    dtype: str  # pandas dtype of the column
    description: str
    version: int = 1
    # nulls expected by definition (e.g. no gap between orders for a one-order customer)
    max_null_share: float = 0.0
    source: str = "transactions"  # transactions | products | inventory: absent source, absent feature
    low: float | None = 0.0  # valid range, checked by the feature_values_in_range gate
    high: float | None = None


FEATURES: tuple[FeatureDef, ...] = (
    FeatureDef(
        "recency_days",
        "customer",
        "float64",
        "days from the last purchase to as_of; null for a customer with returns only",
        max_null_share=0.05,
    ),
    FeatureDef("frequency", "customer", "int64", "purchase orders in the 365 days before as_of"),
    FeatureDef(
        "monetary",
        "customer",
        "float64",
        "net revenue (returns subtracted) in the last 365 days; negative when returns exceed buys",
        low=None,
    ),
    FeatureDef(
        "avg_order_value",
        "customer",
        "float64",
        "mean gross revenue per purchase order, all history",
        max_null_share=0.05,
    ),
    FeatureDef("tenure_days", "customer", "float64", "days from the first order to as_of"),
    FeatureDef(
        "avg_days_between_orders",
        "customer",
        "float64",
        "(last - first purchase) / (purchase orders - 1); null with a single purchase",
        max_null_share=0.95,
    ),
    FeatureDef(
        "return_rate",
        "customer",
        "float64",
        "units returned / units bought, all history",
        max_null_share=0.05,
    ),
    FeatureDef("distinct_products", "customer", "int64", "distinct products bought, all history"),
    FeatureDef(
        "favourite_category",
        "customer",
        "string",
        "category with the most gross revenue, all history",
        max_null_share=0.05,
        source="products",
        low=None,
    ),
    FeatureDef(
        "favourite_category_share",
        "customer",
        "float64",
        "favourite category's share of the customer's gross revenue",
        max_null_share=0.05,
        source="products",
        high=1.0,
    ),
    FeatureDef(
        "clv_12m",
        "customer",
        "float64",
        "expected gross revenue in the next 365 days: BG/NBD purchases x Gamma-Gamma spend per "
        "purchase day, fitted on history before as_of",
    ),
    FeatureDef("category", "product", "string", "catalog category", source="products", low=None),
    FeatureDef(
        "price",
        "product",
        "float64",
        "catalog list price, else median selling price over the last 90 days",
        max_null_share=0.5,
    ),
    FeatureDef(
        "price_percentile_in_category",
        "product",
        "float64",
        "rank of price within its category, 0-1 (1 = dearest)",
        max_null_share=0.5,
        source="products",
        high=1.0,
    ),
    FeatureDef(
        "category_popularity",
        "product",
        "float64",
        "the product's category's share of all gross sales revenue over the last 90 days",
        source="products",
        high=1.0,
    ),
    FeatureDef(
        "share_of_category_revenue_90d",
        "product",
        "float64",
        "the product's share of its category's gross sales revenue over the last 90 days",
        max_null_share=0.5,
        source="products",
        high=1.0,
    ),
    FeatureDef("sales_velocity_28d", "product", "float64", "units sold per day over the last 28 days"),
    FeatureDef(
        "return_rate",
        "product",
        "float64",
        "units returned / units sold over the last 365 days; null when none sold",
        max_null_share=0.5,
    ),
    FeatureDef("rating", "product", "float64", "catalog rating", max_null_share=0.5, source="products"),
    FeatureDef(
        "inventory_ratio",
        "product",
        "float64",
        "units on hand at the last snapshot / mean weekly units sold over 12 weeks",
        max_null_share=0.5,
        source="inventory",
    ),
    FeatureDef(
        "days_of_cover",
        "product",
        "float64",
        "units on hand / mean daily units sold over 12 weeks (null when nothing sold)",
        max_null_share=0.5,
        source="inventory",
    ),
)


def features_of(group: str, sources: set[str] | None = None) -> list[FeatureDef]:
    """The group's features, in order; only those whose source exists when `sources` is given."""
    return [f for f in FEATURES if f.group == group and (sources is None or f.source in sources)]


def group_version(group: str) -> str:
    """Changes whenever a feature of the group is added, removed, retyped or re-versioned."""
    spec = ";".join(f"{f.name}:{f.dtype}:v{f.version}" for f in features_of(group))
    return f"{group}-" + hashlib.sha256(spec.encode()).hexdigest()[:10]


def registry_table(group: str | None = None) -> pd.DataFrame:
    rows = [asdict(f) for f in FEATURES if group is None or f.group == group]
    return pd.DataFrame(rows)[
        ["group", "name", "dtype", "version", "source", "max_null_share", "description"]
    ]


def conform(frame: pd.DataFrame, group: str, sources: set[str]) -> pd.DataFrame:
    """Entity id first, then the registered features of the available sources, with their dtypes."""
    cols = [ENTITY[group], *(f.name for f in features_of(group, sources))]
    dtypes = {f.name: ("string[pyarrow]" if f.dtype == "string" else f.dtype) for f in features_of(group)}
    out = frame[cols]  # a new frame: its columns may keep their arrays when the dtype is right
    return out.astype({c: dtypes[c] for c in cols[1:]}, copy=False)


ARROW_TYPES = {"float64": pa.float64(), "int64": pa.int64(), "string": pa.large_string()}


def conform_arrow(columns: dict, group: str, sources: set[str], stamps: dict[str, pa.Array]) -> pa.Table:
    """`conform` for columns of arrays, as an Arrow table: the entity id, then `stamps` (the
    snapshot's instant and version), then the registered features with their types, as pandas
    would have converted the conformed frame."""
    defs = features_of(group, sources)
    arrays = {ENTITY[group]: pa.array(columns[ENTITY[group]], pa.large_string()), **stamps}
    arrays |= {f.name: pa.array(columns[f.name], ARROW_TYPES[f.dtype]) for f in defs}
    return pa.table(arrays)
