"""Seeded generator of a retailer's order lines, catalog and weekly inventory.

Customers follow a BG/NBD-like life: acquired over time (more as the business grows), buy at a
customer-specific Poisson rate (Gamma heterogeneity) modulated by the demand calendar, and churn
with a customer-specific probability after each purchase. Guest orders come on top. Lines get a
category from a seasonal mix (or the customer's favourite), a product by within-category
popularity, promotions cut prices and lift demand, and some purchases come back as returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlops_assets.sample_data import catalog
from mlops_assets.sample_data.calendar import demand_multiplier

STORES = np.array(["S01", "S02", "S03", "S04"])
STORE_SHARES = np.array([0.38, 0.27, 0.20, 0.15])
WEB = "WEB"
STORE_HOURS = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 5, 7, 9, 9, 7, 6, 6, 8, 9, 7, 4, 2, 0, 0.0])
WEB_HOURS = np.array([2, 1, 1, 0.5, 0.5, 1, 2, 3, 4, 5, 5, 6, 6, 6, 5, 5, 5, 6, 7, 8, 8, 7, 5, 3.0])
RETURN_RATE = 0.035  # share of purchase lines that come back
DUPLICATE_SHARE = 0.002  # exact duplicate lines appended
CORRUPT_SHARE = 0.003  # lines corrupted in place (bad price, key, quantity, timestamp)


@dataclass
class SampleData:
    transactions: pd.DataFrame
    products: pd.DataFrame
    inventory: pd.DataFrame
    promotions: pd.DataFrame


def generate(
    lines: int = 200_000,
    seed: int = 7,
    start: str = "2023-01-01",
    end: str = "2024-12-31",
    n_products: int = 200,
) -> SampleData:
    """Generate about `lines` order lines (exactly `lines` rows in the transactions file)."""
    days = pd.date_range(start, end, freq="D")
    streams = np.random.SeedSequence(seed).spawn(6)
    rng_cat, rng_promo, rng_cust, rng_lines, rng_dirt, rng_inv = (np.random.default_rng(s) for s in streams)
    products = catalog.make_products(rng_cat, n_products, days[0])
    promos = catalog.make_promotions(rng_promo, days)
    sales = _sales(rng_cust, rng_lines, seed, days, lines, products, promos)
    inventory = _inventory(rng_inv, _weekly_demand(sales, products, days), products, days)
    transactions = _dirty(rng_dirt, sales, lines, days)
    return SampleData(
        transactions=transactions,
        products=products.drop(columns="_popularity"),
        inventory=inventory,
        promotions=promos,
    )


def _sales(rng_cust, rng_lines, seed, days, lines, products, promos, shard=None) -> pd.DataFrame:
    """About `lines` clean lines (sales and returns), before dirt and duplicates."""
    # a pilot run on a small population calibrates customers-per-line for the target size
    pilot = _orders(np.random.default_rng(seed + 1), days, 2_000)
    lines_per_customer = len(pilot) * 2.2 / 2_000
    n_clean = lines - round(lines * DUPLICATE_SHARE)
    n_customers = max(50, int(n_clean / lines_per_customer * 1.1))
    orders = _orders(rng_cust, days, n_customers)
    sales = _lines(rng_lines, orders, products, promos, days, shard)
    sales = pd.concat([sales, _returns(rng_lines, sales, days)], ignore_index=True)
    return _trim(rng_lines, sales, n_clean)


def _orders(rng: np.random.Generator, days: pd.DatetimeIndex, n_customers: int) -> pd.DataFrame:
    mult = demand_multiplier(days)
    m_max = mult.max()
    n_days = len(days)
    existing = rng.random(n_customers) < 0.2
    growth = np.cumsum(1.0 + 0.15 * np.arange(n_days) / 365.25)
    acq = np.where(existing, 0, np.searchsorted(growth, rng.random(n_customers) * growth[-1])).clip(
        0, n_days - 1
    )
    acq.sort()  # customer ids in order of acquisition
    existing = acq == 0
    rate = rng.gamma(0.8, (1 / 30) / 0.8, n_customers)  # orders/day at multiplier 1
    dropout = rng.beta(1.3, 8.0, n_customers)
    lifetime = rng.geometric(dropout)  # purchases before the customer churns
    span = n_days - acq
    n_cand = rng.poisson(rate * m_max * span)
    cust = np.repeat(np.arange(n_customers), n_cand)
    day = acq[cust] + (rng.random(len(cust)) * span[cust]).astype(int)
    keep = rng.random(len(day)) < mult[day] / m_max
    cust, day = cust[keep], day[keep]
    first = ~existing  # a new customer's acquisition is a purchase
    cust = np.concatenate([np.flatnonzero(first), cust])
    day = np.concatenate([acq[first], day])
    order = np.lexsort((day, cust))
    cust, day = cust[order], day[order]
    rank = np.arange(len(cust)) - np.searchsorted(cust, cust)
    alive = rank < lifetime[cust]
    cust, day = cust[alive], day[alive]
    # store choice: a home store, and a customer-specific taste for ordering online
    home = rng.choice(STORES, size=n_customers, p=STORE_SHARES)
    p_web = rng.beta(1.5, 3.0, n_customers)
    store = np.where(rng.random(len(cust)) < p_web[cust], WEB, home[cust])
    fav = rng.choice(len(catalog.CATEGORIES), size=n_customers, p=_category_shares())
    # guests: about 15% of orders, same calendar
    n_guest_day = rng.poisson(0.18 * len(cust) / mult.sum() * mult)
    g_day = np.repeat(np.arange(n_days), n_guest_day)
    g_store = np.where(rng.random(len(g_day)) < 0.25, WEB, rng.choice(STORES, len(g_day), p=STORE_SHARES))
    return pd.DataFrame(
        {
            "day": np.concatenate([day, g_day]),
            "customer": np.concatenate([cust, np.full(len(g_day), -1)]),
            "store": np.concatenate([store, g_store]),
            "fav": np.concatenate([fav[cust], np.full(len(g_day), -1)]),
        }
    )


def _category_shares() -> np.ndarray:
    shares = np.array([v[1] for v in catalog.CATEGORIES.values()])
    return shares / shares.sum()


def _lines(rng, orders, products, promos, days, shard: int | None = None) -> pd.DataFrame:
    # a shard's ids carry its number, so shards never share a customer or an order
    tag = "" if shard is None else f"{shard:03d}"
    n = len(orders)
    hours = np.where(
        orders["store"].to_numpy() == WEB,
        rng.choice(24, n, p=WEB_HOURS / WEB_HOURS.sum()),
        rng.choice(24, n, p=STORE_HOURS / STORE_HOURS.sum()),
    )
    seconds = hours * 3600 + rng.integers(0, 3600, n)
    ts = days[orders["day"].to_numpy()] + pd.to_timedelta(seconds, unit="s")
    orders = orders.assign(ts=ts).sort_values("ts", kind="stable", ignore_index=True)
    orders["order_id"] = [f"SO{tag}{i:07d}" for i in range(1, n + 1)]
    n_lines = 1 + rng.poisson(1.25, n)
    lines = orders.loc[orders.index.repeat(n_lines)].reset_index(drop=True)
    day = lines["day"].to_numpy()
    discount = catalog.promo_discounts(promos, days).to_numpy()
    weights = catalog.seasonal_category_weights(days) * (1.0 + 2.5 * discount)
    cum = np.cumsum(weights / weights.sum(1, keepdims=True), axis=1)
    cat = (rng.random(len(lines))[:, None] > cum[day]).sum(1).clip(0, cum.shape[1] - 1)
    fav = lines["fav"].to_numpy()
    use_fav = (fav >= 0) & (rng.random(len(lines)) < 0.35)
    cat = np.where(use_fav, fav, cat)
    product = np.empty(len(lines), dtype=np.int64)
    launch = pd.to_datetime(products["launch_date"]).to_numpy()
    month = days[day].to_period("M")
    for (c, m), idx in pd.Series(np.arange(len(lines))).groupby([cat, month]).groups.items():
        in_cat = np.flatnonzero(
            (products["category"].to_numpy() == list(catalog.CATEGORIES)[c])
            & (launch <= m.start_time.to_datetime64())
        )
        pop = products["_popularity"].to_numpy()[in_cat]
        product[idx] = rng.choice(in_cat, size=len(idx), p=pop / pop.sum())
    lines["product"] = product
    lines = lines.drop_duplicates(["order_id", "product"], ignore_index=True)
    product = lines["product"].to_numpy()
    cat_of = products["category"].map({c: i for i, c in enumerate(catalog.CATEGORIES)}).to_numpy()
    grocery = cat_of[product] == list(catalog.CATEGORIES).index("Grocery")
    qty = 1 + rng.poisson(np.where(grocery, 1.6, 0.35))
    bulk = rng.random(len(lines)) < 0.002
    qty = np.where(bulk, rng.integers(10, 60, len(lines)), qty)
    years = (lines["ts"] - days[0]).dt.days.to_numpy() / 365.25
    disc = discount[lines["day"].to_numpy(), cat_of[product]]
    price = products["list_price"].to_numpy()[product] * (1 + 0.03 * np.floor(years)) * (1 - disc)
    return pd.DataFrame(
        {
            "invoice_id": lines["order_id"],
            "invoice_ts": lines["ts"],
            "customer": np.where(
                lines["customer"] >= 0,
                "C" + tag + lines["customer"].astype(str).str.zfill(6),
                None,
            ),
            "sku": products["sku"].to_numpy()[product],
            "store": lines["store"],
            "qty": qty,
            "unit_price": np.round(price, 2),
        }
    )


def _returns(rng, sales: pd.DataFrame, days) -> pd.DataFrame:
    picked = sales[(rng.random(len(sales)) < RETURN_RATE) & ~sales["sku"].isna()]
    back = picked.assign(
        invoice_ts=picked["invoice_ts"] + pd.to_timedelta(rng.integers(1, 30, len(picked)), unit="D"),
        qty=-rng.integers(1, picked["qty"].to_numpy() + 1),
    )
    back = back[back["invoice_ts"] < days[-1] + pd.Timedelta(days=1)]
    back = back.assign(invoice_id=["RT" + oid[2:] for oid in back["invoice_id"]])
    return back


def _trim(rng, sales: pd.DataFrame, n: int) -> pd.DataFrame:
    """Drop whole random orders until at most `n` lines remain, then top up from single lines."""
    orders = sales["invoice_id"].unique()
    rng.shuffle(orders)
    sizes = sales.groupby("invoice_id").size().reindex(orders).to_numpy()
    keep = set(orders[np.cumsum(sizes) <= n])
    out = sales[sales["invoice_id"].isin(keep)]
    if len(out) < n:
        rest = sales.drop(out.index)
        out = pd.concat([out, rest.iloc[: n - len(out)]])
    return out.sort_values("invoice_ts", kind="stable", ignore_index=True)


def _dirty(rng, sales: pd.DataFrame, lines: int, days) -> pd.DataFrame:
    """About 0.5% dirt: duplicates, zero and absurd prices, missing skus, future stamps."""
    out = sales.copy()
    out["invoice_ts"] = out["invoice_ts"].dt.strftime("%Y-%m-%d %H:%M:%S")
    n_bad = round(len(out) * CORRUPT_SHARE)
    idx = rng.choice(len(out), size=n_bad, replace=False)
    kinds = rng.choice(5, size=n_bad, p=[0.2, 0.2, 0.3, 0.15, 0.15])
    price = out["unit_price"].to_numpy().copy()
    qty = out["qty"].to_numpy().copy()
    sku = out["sku"].to_numpy().copy()
    ts = out["invoice_ts"].to_numpy().copy()
    price[idx[kinds == 0]] = 0.0
    price[idx[kinds == 1]] *= rng.choice([250.0, 1000.0, 5000.0], size=(kinds == 1).sum())
    sku[idx[kinds == 2]] = None
    far = days[-1] + pd.to_timedelta(rng.integers(800, 2000, (kinds == 3).sum()), unit="D")
    ts[idx[kinds == 3]] = far.strftime("%Y-%m-%d %H:%M:%S")
    qty[idx[kinds == 4]] = rng.integers(5_000, 90_000, (kinds == 4).sum())
    out = out.assign(unit_price=price, qty=qty, sku=sku, invoice_ts=ts)
    # a duplicate sits right after its original, like a double-submitted line
    dup_pos = rng.choice(len(out), size=lines - len(out), replace=False)
    position = np.concatenate([np.arange(len(out)), dup_pos + 0.5])
    out = pd.concat([out, out.iloc[dup_pos]])
    return out.iloc[np.argsort(position, kind="stable")].reset_index(drop=True)


def _weeks(days: pd.DatetimeIndex) -> pd.DatetimeIndex:
    return pd.date_range(days[0], days[-1], freq="W-MON")


def _weekly_demand(sales: pd.DataFrame, products: pd.DataFrame, days) -> np.ndarray:
    """Units sold per (Monday week, product): what the inventory policy reorders against."""
    weeks = _weeks(days)
    sold = sales[sales["qty"] > 0]
    week_of = np.searchsorted(weeks.to_numpy(), sold["invoice_ts"].to_numpy(), side="right") - 1
    pidx = products["sku"].reset_index().set_index("sku")["index"]
    demand = np.zeros((len(weeks), len(products)))
    ok = (week_of >= 0) & sold["sku"].notna().to_numpy()
    np.add.at(
        demand,
        (week_of[ok], pidx.reindex(sold["sku"][ok]).to_numpy().astype(int)),
        sold["qty"].to_numpy()[ok],
    )
    return demand


def _inventory(rng, demand: np.ndarray, products: pd.DataFrame, days) -> pd.DataFrame:
    """Weekly Monday snapshots of on-hand units per product under an order-up-to policy."""
    weeks = _weeks(days)
    avg = demand.mean(0) + 0.5
    target = avg * rng.uniform(3, 8, len(products)) + 5
    on_hand = target.copy()
    pending = np.zeros(len(products))
    snaps = np.empty_like(demand)
    for w in range(len(weeks)):
        on_hand = on_hand + pending
        pending = np.zeros(len(products))
        snaps[w] = np.floor(on_hand)
        on_hand = np.maximum(0.0, on_hand - demand[w])
        # reorder below a third of target; suppliers are sometimes late, which makes stockouts
        reorder = (on_hand < target / 3) & (rng.random(len(products)) > 0.1)
        pending[reorder] = (target - on_hand)[reorder]
    launched = pd.to_datetime(products["launch_date"]).to_numpy()[None, :] <= weeks.to_numpy()[:, None]
    snaps = np.where(launched, snaps, 0)
    return pd.DataFrame(
        {
            "snapshot_date": np.repeat(weeks.strftime("%Y%m%d"), len(products)),
            "sku": np.tile(products["sku"].to_numpy(), len(weeks)),
            "units_on_hand": snaps.ravel().astype(int),
        }
    )
