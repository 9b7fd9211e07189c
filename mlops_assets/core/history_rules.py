"""Rules that judge a line against other days: the same line re-sent under a later date
(replayed_order), a return with no sale before it (return_without_sale). Both read the run's
lines and what was published before the run (core/publication.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from mlops_assets.core.quality import Window


REPLAY_KEY = ["order_id", "customer_id", "product_id", "store_id", "quantity", "unit_price"]


def replay_keys(frame: pd.DataFrame) -> pd.Series:
    """One hash per line of everything but its timestamp (the same line re-dated hashes equal),
    the same whichever reader typed the frame (nulls, text and numbers normalised)."""
    cols = frame[REPLAY_KEY].astype(object)
    text = cols.where(cols.notna(), None).astype(str)
    return pd.util.hash_pandas_object(text, index=False)


def replayed_orders(df: pd.DataFrame, window: Window, earlier: pd.DataFrame | None) -> pd.Series:
    """Lines re-sent under a later date: the same order id, customer, product, store, quantity
    and price as a line of an earlier day, in the run's lines with a timestamp in the window or
    in `earlier` (columns order_id, key, first_day: lines published before the run; None: the
    rule is off). Only lines of an order seen on two days are hashed."""
    out = pd.Series(False, index=df.index)
    if earlier is None or df.empty:
        return out
    ts, ids = df["order_ts"], df["order_id"]
    day = ts.dt.floor("D").where(window.contains(ts))
    codes = pd.factorize(ids)[0]
    valid = (codes >= 0) & day.notna().to_numpy()
    pairs = pd.DataFrame({"order": codes[valid], "day": day.to_numpy()[valid]}).drop_duplicates()
    multi = pairs["order"].value_counts()
    again = np.isin(codes, multi.index[multi > 1].to_numpy())
    if len(earlier):
        again |= ids.isin(set(earlier["order_id"])).to_numpy()
    again &= valid
    if not again.any():
        return out
    rows = df[again]
    keys = replay_keys(rows).to_numpy()
    first = day[again].groupby(keys).transform("min")
    if len(earlier):
        prior = pd.Series(keys).map(earlier.groupby("key")["first_day"].min()).set_axis(rows.index)
        first = first.where(~(prior < first), prior)
    out[again] = (day[again] > first).fillna(False).to_numpy(dtype=bool)
    return out


def returns_without_sale(
    df: pd.DataFrame, window: Window, days: int | None, earlier: pd.DataFrame | None
) -> pd.Series:
    """Negative-quantity lines of a known customer with no positive line of the same customer
    and product in the `days` before them, among the run's lines and `earlier` (customer_id,
    product_id, order_ts of sales published before the run). For feeds whose returns carry no
    marker of their own: a sale written negative has no sale before it. Lines in the window's
    first `days` are not judged (their sale may precede the data). days None: the rule is off."""
    out = pd.Series(False, index=df.index)
    if days is None or df.empty:
        return out
    ts, qty = df["order_ts"], df["quantity"]
    judged = (qty < 0) & df["customer_id"].notna() & window.contains(ts)
    judged &= ts >= window.start + pd.Timedelta(days=days)
    if not judged.any():
        return out
    cols = ["customer_id", "product_id", "order_ts"]
    sales = df.loc[(qty > 0) & ts.notna(), cols]
    if earlier is not None and len(earlier):
        sales = pd.concat([sales, earlier[cols]], ignore_index=True)

    def keys(f: pd.DataFrame) -> pd.DataFrame:  # merge_asof wants plain text keys on both sides
        return f.assign(customer_id=f["customer_id"].astype(str), product_id=f["product_id"].astype(str))

    asked = keys(df.loc[judged, cols]).reset_index().sort_values("order_ts")
    found = pd.merge_asof(
        asked,
        keys(sales).rename(columns={"order_ts": "sold"}).sort_values("sold"),
        left_on="order_ts",
        right_on="sold",
        by=["customer_id", "product_id"],
        allow_exact_matches=False,
    )
    missing = found["sold"].isna() | (found["order_ts"] - found["sold"] > pd.Timedelta(days=days))
    out.loc[found.loc[missing.to_numpy(), "index"].to_numpy()] = True
    return out
