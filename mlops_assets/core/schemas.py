"""Canonical schemas of the three sources and the pandera schemas the quality gates enforce."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa

# canonical column -> kind; the order is the order of the bronze tables
CANONICAL: dict[str, dict[str, str]] = {
    "transactions": {
        "order_id": "string",
        "order_ts": "datetime",
        "customer_id": "string",
        "product_id": "string",
        "store_id": "string",
        "quantity": "float",
        "unit_price": "float",
        "amount": "float",
    },
    "products": {
        "product_id": "string",
        "name": "string",
        "category": "string",
        "price": "float",
        "rating": "float",
    },
    "inventory": {"snapshot_date": "datetime", "product_id": "string", "on_hand": "float"},
}
# mappings sources.yaml must give; "a|b" means either
REQUIRED: dict[str, list[str]] = {
    "transactions": ["order_ts", "quantity", "unit_price|amount"],
    "products": ["product_id"],
    "inventory": ["snapshot_date", "product_id", "on_hand"],
}
# stand-ins for optional dimensions a source does not have
DEFAULT_DIMENSION = "ALL"
LINEAGE = ["source_file", "source_row"]
UNPARSED = "unparsed_values"  # original text of values that did not parse, e.g. "order_ts='31/02'"
PARTITION_COLUMN = "partition_date"
READ_FAULT = "read_fault"  # why a source record could not become a row (its raw text in UNPARSED)

TEXT = pd.StringDtype("pyarrow")  # text columns: fast null checks, strip, hashing and DuckDB hand-off
PANDAS_DTYPE = {"string": TEXT, "datetime": "datetime64[ns]", "float": "float64"}


def empty_frame(source: str) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=PANDAS_DTYPE[k]) for c, k in CANONICAL[source].items()})


def raw_schema(
    source: str, mapped: list[str], raw: pd.DataFrame, parsed: pd.DataFrame, max_bad_share: float
) -> pa.DataFrameSchema:
    """Gate on the renamed source as read: every mapped column is present and parses.

    A column "parses" when at most `max_bad_share` of its non-null values fail to convert to
    the canonical type; fewer failures are bad rows (quarantined), more mean a broken column
    (a price column of strings, a renamed or reformatted field), which blocks the pipeline.
    """
    columns = {}
    for col in mapped:
        kind = CANONICAL[source][col]
        bad = None
        if col in raw.columns:
            bad = raw[col].notna() & parsed[col].isna()
            if bad.any():  # only the few that did not parse: were they blanks?
                bad[bad] = _holds_value(raw.loc[bad, col]).to_numpy(dtype=bool)
        broken = bad is not None and bad.sum() > max_bad_share * max(1, raw[col].notna().sum())

        def parses(values: pd.Series, bad=bad, broken=broken) -> pd.Series | bool:
            # pandera hands over the non-null values: report the failing ones among them
            return ~bad.reindex(values.index, fill_value=False) if broken else True

        columns[col] = pa.Column(
            checks=pa.Check(parses, name=f"parses_as_{kind}"), nullable=True, required=True
        )
    return pa.DataFrameSchema(columns, strict=False, name=f"{source}_source")


def _holds_value(raw: pd.Series) -> pd.Series:
    """Not null and not only blanks: ' ' for an empty field is formatting, not a bad value."""
    if raw.dtype == object or isinstance(raw.dtype, pd.StringDtype):
        return raw.notna() & (raw.astype(TEXT).str.strip() != "").fillna(False).astype(bool)
    return raw.notna()


def null_rate_schema(columns: dict[str, float]) -> pa.DataFrameSchema:
    """Gate: each column's null share stays under its ceiling (a null explosion blocks)."""
    return pa.DataFrameSchema(
        {
            col: pa.Column(
                checks=pa.Check(
                    lambda s, t=ceiling: bool(s.isna().mean() <= t),
                    name=f"null_rate<={ceiling:g}",
                    ignore_na=False,  # the check is about the nulls: hand them over
                ),
                nullable=True,
            )
            for col, ceiling in columns.items()
        },
        strict=False,
        name="null_rates",
    )


def silver_schema(start: pd.Timestamp, end: pd.Timestamp, max_abs_quantity: float) -> pa.DataFrameSchema:
    """Gate on silver lines: the quarantine rules really removed what they promise."""
    return pa.DataFrameSchema(
        {
            "order_id": pa.Column(nullable=False),
            "order_ts": pa.Column(
                "datetime64[ns]", pa.Check.in_range(start, end, include_max=False), nullable=False
            ),
            "product_id": pa.Column(nullable=False),
            "store_id": pa.Column(nullable=False),
            "quantity": pa.Column(
                float,
                [pa.Check.ne(0), pa.Check.in_range(-max_abs_quantity, max_abs_quantity)],
                nullable=False,
            ),
            "unit_price": pa.Column(float, pa.Check.gt(0), nullable=False),
            "amount": pa.Column(float, nullable=False),
        },
        strict=False,
        name="silver_transactions",
    )


def catalog_schema() -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            "product_id": pa.Column(nullable=False, unique=True),
            "price": pa.Column(float, pa.Check.gt(0), nullable=True),
            "rating": pa.Column(float, pa.Check.ge(0), nullable=True),
        },
        strict=False,
        name="products",
    )


def inventory_schema() -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            "snapshot_date": pa.Column("datetime64[ns]", nullable=False),
            "product_id": pa.Column(nullable=False),
            "on_hand": pa.Column(float, pa.Check.ge(0), nullable=False),
        },
        strict=False,
        name="inventory",
    )


def finite_features_schema(columns: list[str]) -> pa.DataFrameSchema:
    """Gate: no infinity in any numeric feature (nulls are the null-share gate's business)."""
    finite = pa.Check(lambda s: np.isfinite(s.astype(float)), name="finite", error="no infinities")
    return pa.DataFrameSchema({c: pa.Column(checks=finite, nullable=True) for c in columns}, name="finite")


def feature_range_schema(bounds: dict[str, tuple[float | None, float | None]]) -> pa.DataFrameSchema:
    """Gate: each numeric feature within its registered range (e.g. recency_days >= 0)."""
    columns = {}
    for col, (low, high) in bounds.items():
        if low is not None and high is not None:
            check = pa.Check.in_range(low, high)
        elif low is not None:
            check = pa.Check.ge(low)
        elif high is not None:
            check = pa.Check.le(high)
        else:
            continue
        columns[col] = pa.Column(checks=check, nullable=True)
    return pa.DataFrameSchema(columns, name="feature_ranges")


def one_row_per_entity_schema(entity: str) -> pa.DataFrameSchema:
    """Gate: the entity id is present and unique (one row per customer / product)."""
    return pa.DataFrameSchema({entity: pa.Column(nullable=False, unique=True)}, name="entity_key")


WIDENING_SLACK = 0.9  # Prophet's bounds are sampled quantiles: allow their Monte-Carlo noise


def _widening(frame: pd.DataFrame) -> pd.Series:
    """Per series, the upper 95% spread (upper95 - mean: the side clipping at zero revenue
    never touches) over the last quarter of the horizon is not narrower than over the first."""
    spread = frame["upper95"] - frame["mean"]
    quarter = (frame.groupby("series_id")["step"].transform("max") / 4).clip(lower=1)
    early = spread.where(frame["step"] <= quarter).groupby(frame["series_id"]).mean()
    late = spread.where(frame["step"] > 3 * quarter).groupby(frame["series_id"]).mean()
    ok = (late.fillna(early) >= WIDENING_SLACK * early).reindex(frame["series_id"])
    return pd.Series(ok.to_numpy(), index=frame.index)


def catalog_forecast_schema() -> pa.DataFrameSchema:
    """forecast_schema, and the catalog's point forecast finite and non-negative."""
    value = pa.Column(float, [pa.Check.ge(0), pa.Check(np.isfinite, name="finite")], nullable=False)
    return forecast_schema().add_columns({"point": value}).set_name("catalog_forecasts")


def forecast_schema() -> pa.DataFrameSchema:
    """Gate on shipped forecasts: finite, non-negative, nested bands, widening intervals."""
    nested = [
        pa.Check(lambda d: d["lower95"] <= d["lower80"] + 1e-9, name="lower95<=lower80"),
        pa.Check(lambda d: d["lower80"] <= d["mean"] + 1e-9, name="lower80<=mean"),
        pa.Check(lambda d: d["mean"] <= d["upper80"] + 1e-9, name="mean<=upper80"),
        pa.Check(lambda d: d["upper80"] <= d["upper95"] + 1e-9, name="upper80<=upper95"),
        pa.Check(_widening, name="intervals_widen_with_horizon"),
    ]
    value = pa.Column(float, [pa.Check.ge(0), pa.Check(np.isfinite, name="finite")], nullable=False)
    return pa.DataFrameSchema(
        {c: value for c in ("mean", "lower80", "upper80", "lower95", "upper95")},
        checks=nested,
        name="sales_forecasts",
    )
