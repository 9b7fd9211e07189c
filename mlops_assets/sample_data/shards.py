"""A chain-sized order log generated one customer shard at a time (bounded memory): each shard
is generator.py's simulation of its own customers over the whole window, with ids that carry
the shard's number; the catalog and promotions are shared, and the inventory follows every
shard's demand."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlops_assets.sample_data import catalog
from mlops_assets.sample_data.generator import _dirty, _inventory, _sales, _weekly_demand, _weeks


@dataclass
class Shards:
    """A chain-sized log generated one customer shard at a time: `transactions()` yields each
    shard's lines (its own customers and order ids, the whole window, about `shard_lines`
    lines), and `inventory()`, after the last shard, the chain's weekly on-hand snapshots."""

    lines: int
    seed: int = 7
    start: str = "2023-01-01"
    end: str = "2024-12-31"
    n_products: int = 200
    shard_lines: int = 1_000_000

    def __post_init__(self) -> None:
        self.days = pd.date_range(self.start, self.end, freq="D")
        streams = np.random.SeedSequence(self.seed).spawn(3)
        rng_cat, rng_promo, self._rng_inv = (np.random.default_rng(s) for s in streams)
        products = catalog.make_products(rng_cat, self.n_products, self.days[0])
        self.promotions = catalog.make_promotions(rng_promo, self.days)
        self._catalog = products
        self.products = products.drop(columns="_popularity")
        self._demand = np.zeros((len(_weeks(self.days)), len(products)))
        count = max(1, -(-self.lines // self.shard_lines))
        self.sizes = [self.lines // count + (k < self.lines % count) for k in range(count)]

    def transactions(self):
        """(shard number, its lines as the file holds them), one shard in memory at a time."""
        for k, size in enumerate(self.sizes):
            streams = np.random.SeedSequence([self.seed, k + 1]).spawn(3)
            rng_cust, rng_lines, rng_dirt = (np.random.default_rng(s) for s in streams)
            sales = _sales(rng_cust, rng_lines, self.seed + k, self.days, size, self._catalog,
                           self.promotions, shard=k)  # fmt: skip
            self._demand += _weekly_demand(sales, self._catalog, self.days)
            yield k, _dirty(rng_dirt, sales, size, self.days)

    def inventory(self) -> pd.DataFrame:
        return _inventory(self._rng_inv, self._demand, self._catalog, self.days)
