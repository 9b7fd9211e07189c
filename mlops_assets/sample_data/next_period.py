"""The next period of a generated sample, optionally shifted, as a new source file: the drift
scenario a user can watch (new_data_sensor ingests it, feature_drift_report flags it,
drift_retrain_sensor starts a retraining).

The new days come from the same generator (same seed, the window extended), so without a
shift they look like the past; the shifts are a price level, a share of customers replaced by
new ones, and a category whose sales collapse.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from mlops_assets.sample_data.generator import generate
from mlops_assets.settings import resolve_files


@dataclass(frozen=True)
class Shift:
    price_level: float = 1.0  # unit prices multiplied by this
    new_customer_share: float = 0.0  # share of known customers replaced by first-time ones
    collapse_category: str | None = None  # this category keeps only `collapse_to` of its lines
    collapse_to: float = 0.1


def _glob_of(path: str) -> str:
    """raw/transactions.csv.gz -> raw/transactions*.csv.gz (a glob already stays as it is)."""
    if any(ch in path for ch in "*?["):
        return path
    p = Path(path)
    stem, _, rest = p.name.partition(".")
    return str(p.with_name(f"{stem}*.{rest}" if rest else f"{stem}*"))


def shifted(lines: pd.DataFrame, products: pd.DataFrame, shift: Shift, rng) -> pd.DataFrame:
    out = lines.copy()
    out["unit_price"] = np.round(out["unit_price"] * shift.price_level, 2)
    if shift.new_customer_share > 0:
        known = out["customer"].dropna().unique()
        replaced = set(rng.choice(known, int(len(known) * shift.new_customer_share), replace=False))
        out["customer"] = [f"N{c}" if c in replaced else c for c in out["customer"]]
    if shift.collapse_category:
        skus = set(products.loc[products["category"] == shift.collapse_category, "sku"])
        if not skus:
            raise ValueError(f"no category '{shift.collapse_category}' in the catalog")
        in_cat = out["sku"].isin(skus).to_numpy()
        out = out[~in_cat | (rng.random(len(out)) < shift.collapse_to)]
    return out.reset_index(drop=True)


def next_period(out: Path, days: int, seed: int, shift: Shift) -> Path:
    """Write `days` more days of order lines after the window of `out/sources.yaml` to a new
    file beside the old ones, and extend the window (and the transactions path to a glob)."""
    sources = out / "sources.yaml"
    spec = yaml.safe_load(sources.read_text())
    start = pd.Timestamp(spec["window"]["start_date"])
    end = pd.Timestamp(spec["window"]["end_date"])
    new_end = end + pd.Timedelta(days=days)
    files = resolve_files(out, spec["transactions"]["path"])
    old_lines = sum(len(pd.read_csv(f, usecols=[0])) for f in files)
    old_days = (end - start).days + 1
    total = int(old_lines * (old_days + days) / old_days)
    data = generate(lines=total, seed=seed, start=str(start.date()), end=str(new_end.date()))
    tx = data.transactions
    new = tx[tx["invoice_ts"] >= str((end + pd.Timedelta(days=1)).date())].copy()
    # order ids restart in a new generation: prefix them so they never collide with the past
    new["invoice_id"] = f"P{new_end:%Y%m%d}-" + new["invoice_id"].astype(str)
    products = pd.read_csv(out / "raw" / "products.csv")
    new = shifted(new, products, shift, np.random.default_rng(seed))
    name = f"transactions_{(end + pd.Timedelta(days=1)).date()}_{new_end.date()}.csv.gz"
    path = out / "raw" / name
    new.to_csv(path, index=False, compression={"method": "gzip", "mtime": 0})
    spec["transactions"]["path"] = _glob_of(spec["transactions"]["path"])
    spec["window"]["end_date"] = str(new_end.date())
    header = f"# Extended on {dt.date.today()} by --next-period {days} (see README: drift scenario)\n"
    sources.write_text(header + yaml.safe_dump(spec, sort_keys=False))
    return path
