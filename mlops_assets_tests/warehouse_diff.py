"""Two warehouses compared table by table: the same tables, the same rows (in any order), floats
within a relative tolerance. What "nothing else changes" is checked with when line-level work
moves between engines (issue 30):

    python -m mlops_assets_tests.warehouse_diff data_before/warehouse.duckdb data_after/warehouse.duckdb
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

from mlops_assets.core import warehouse

# columns that differ between any two builds of the same data: when and by which run a row was
# written, and the registry's links (run ids, URIs); everything else must match
VOLATILE = {
    *("computed_at", "materialized_at", "run_id", "mlflow_run_id", "model_uri", "source_run"),
    *("logged_at", "timestamp", "issued_at", "registered_at", "created_at", "at"),
}


def tables(database) -> list[str]:
    with warehouse.connect(database) as con:
        rows = con.execute(
            "select table_schema || '.' || table_name from information_schema.tables "
            "where table_schema not in ('information_schema', 'pg_catalog') order by 1"
        ).fetchall()
    return [r[0] for r in rows]


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rows in the order of the table's non-float columns, first columns first (a table's
    keys come first), so the same rows line up whatever order they were written in."""
    if not keys:
        return frame.reset_index(drop=True)
    order = frame[keys].astype(str).sort_values(keys, kind="stable").index
    return frame.loc[order].reset_index(drop=True)


def differences(a: pd.DataFrame, b: pd.DataFrame, rtol: float, ignore: set[str] = frozenset()) -> list[str]:
    """What differs between two versions of a table, in sentences (empty: the same)."""
    cols_a, cols_b = [c for c in a.columns if c not in ignore], [c for c in b.columns if c not in ignore]
    if sorted(cols_a) != sorted(cols_b):
        return [f"columns differ: only before {sorted(set(cols_a) - set(cols_b))}, "
                f"only after {sorted(set(cols_b) - set(cols_a))}"]  # fmt: skip
    if len(a) != len(b):
        return [f"{len(a):,} rows before, {len(b):,} after"]
    keys = [c for c in cols_a if a[c].dtype.kind not in "fiu"]
    a, b = _sorted(a[cols_a], keys), _sorted(b[cols_a], keys)
    found = []
    for c in a.columns:
        x, y = a[c], b[c]
        if x.dtype.kind == "f" or y.dtype.kind == "f":
            x, y = x.to_numpy(dtype=float), y.to_numpy(dtype=float)
            same = np.isclose(x, y, rtol=rtol, atol=0, equal_nan=True)
        else:
            same = (x.astype(str) == y.astype(str)).to_numpy()
        if not same.all():
            i = int(np.flatnonzero(~same)[0])
            found.append(
                f"column {c}: {(~same).sum():,} rows differ (first: {a[c].iloc[i]!r} vs {b[c].iloc[i]!r})"
            )
    return found


def compare(before, after, rtol: float = 1e-9, ignore: set[str] = VOLATILE) -> dict[str, list[str]]:
    """Table -> its differences, for every table of either warehouse."""
    names_a, names_b = set(tables(before)), set(tables(after))
    out = {t: ["only before"] for t in names_a - names_b} | {t: ["only after"] for t in names_b - names_a}
    for name in sorted(names_a & names_b):
        out[name] = differences(
            warehouse.read_table(before, name), warehouse.read_table(after, name), rtol, set(ignore)
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rtol", type=float, default=1e-9)
    args = parser.parse_args(argv)
    result = compare(args.before, args.after, args.rtol)
    for name, found in result.items():
        print(f"{name}: " + ("same" if not found else "; ".join(found)))
    return int(any(result.values()))


if __name__ == "__main__":
    sys.exit(main())
