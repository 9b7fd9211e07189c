"""Product catalog and promotion calendar of the synthetic retailer."""

from __future__ import annotations

import numpy as np
import pandas as pd

# category: (base price, share of demand, month-of-year seasonal peak or None)
CATEGORIES: dict[str, tuple[float, float, int | None]] = {
    "Electronics": (140.0, 0.12, 12),
    "Home": (45.0, 0.16, None),
    "Apparel": (38.0, 0.17, 4),
    "Beauty": (19.0, 0.13, None),
    "Sports": (60.0, 0.10, 7),
    "Toys": (26.0, 0.09, 12),
    "Grocery": (6.5, 0.15, None),
    "Books": (15.0, 0.08, None),
}
PRICE_TIERS = {"budget": 0.55, "standard": 1.0, "premium": 1.9}


def make_products(rng: np.random.Generator, n_products: int, start: pd.Timestamp) -> pd.DataFrame:
    names = list(CATEGORIES)
    shares = np.array([CATEGORIES[c][1] for c in names])
    counts = np.maximum(8, np.round(shares / shares.sum() * n_products).astype(int))
    counts[-1] += n_products - counts.sum()
    if counts[-1] < 8:
        raise ValueError(
            f"n_products {n_products} is too few: each of the {len(names)} categories needs at least 8 "
            f"products, and the category shares leave {counts[-1]} for '{names[-1]}'"
        )
    rows = []
    pid = 0
    for cat, count in zip(names, counts, strict=True):
        base = CATEGORIES[cat][0]
        tiers = rng.choice(list(PRICE_TIERS), size=count, p=[0.35, 0.45, 0.20])
        prices = base * np.array([PRICE_TIERS[t] for t in tiers]) * rng.lognormal(0, 0.18, count)
        # Zipf-like popularity within the category: a few best sellers, a long tail
        popularity = 1.0 / np.arange(1, count + 1) ** 0.9
        rng.shuffle(popularity)
        ratings = np.clip(np.round(rng.beta(7, 2, count) * 2.5 + 2.5, 1), 1.0, 5.0)
        launch = np.where(
            rng.random(count) < 0.1,
            start + pd.to_timedelta(rng.integers(200, 600, count), unit="D"),
            start - pd.to_timedelta(rng.integers(30, 1500, count), unit="D"),
        )
        for j in range(count):
            pid += 1
            rows.append(
                {
                    "sku": f"P{pid:04d}",
                    "product_name": f"{cat} {tiers[j]} item {pid}",
                    "category": cat,
                    "price_tier": tiers[j],
                    "list_price": round(float(prices[j]), 2),
                    "rating": float(ratings[j]),
                    "launch_date": pd.Timestamp(launch[j]).date().isoformat(),
                    "_popularity": popularity[j],
                }
            )
    return pd.DataFrame(rows)


def make_promotions(rng: np.random.Generator, days: pd.DatetimeIndex) -> pd.DataFrame:
    """About three promotions a year per category, 7-14 days long, 15-35% off."""
    rows = []
    n_years = max(1, round(len(days) / 365))
    for cat in CATEGORIES:
        for start_i in rng.choice(len(days) - 15, size=3 * n_years, replace=False):
            length = int(rng.integers(7, 15))
            rows.append(
                {
                    "category": cat,
                    "start_date": days[start_i],
                    "end_date": days[min(start_i + length, len(days) - 1)],
                    "discount": round(float(rng.uniform(0.15, 0.35)), 2),
                }
            )
    return pd.DataFrame(rows).sort_values(["category", "start_date"], ignore_index=True)


def promo_discounts(promos: pd.DataFrame, days: pd.DatetimeIndex) -> pd.DataFrame:
    """day x category matrix of the discount in force (0 = full price)."""
    out = pd.DataFrame(0.0, index=days, columns=list(CATEGORIES))
    for p in promos.itertuples():
        out.loc[p.start_date : p.end_date, p.category] = p.discount
    return out


def seasonal_category_weights(days: pd.DatetimeIndex) -> np.ndarray:
    """day x category demand weights with each category's own seasonal peak."""
    names = list(CATEGORIES)
    month = days.month.to_numpy()[:, None]
    weights = np.tile(np.array([CATEGORIES[c][1] for c in names]), (len(days), 1))
    for j, cat in enumerate(names):
        peak = CATEGORIES[cat][2]
        if peak is not None:
            distance = np.minimum(np.abs(month[:, 0] - peak), 12 - np.abs(month[:, 0] - peak))
            weights[:, j] *= 1.0 + 0.9 * np.exp(-0.5 * (distance / 1.2) ** 2)
    return weights
