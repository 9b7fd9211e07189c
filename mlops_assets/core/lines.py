"""Order lines prepared once for features as of many instants."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class LineCodes:
    """The lines' ids as integer codes and their numbers as arrays, prepared once: features as
    of many instants then select a prefix of integers instead of factorizing strings each time."""

    customer: np.ndarray  # code per line, -1 for a guest line
    customers: np.ndarray  # customer id per code
    order: np.ndarray
    product: np.ndarray  # code per line, -1 for a missing product id
    products: np.ndarray
    ts: np.ndarray  # order_ts as int64 nanoseconds
    quantity: np.ndarray
    amount: np.ndarray
    unit_price: np.ndarray | None  # None when the lines have no unit_price

    @classmethod
    def of(cls, transactions: pd.DataFrame) -> LineCodes:
        customer, customers = pd.factorize(transactions["customer_id"])
        product, products = pd.factorize(transactions["product_id"])
        return cls(
            customer=customer,
            customers=np.asarray(customers, dtype=object),
            order=pd.factorize(transactions["order_id"])[0],
            product=product,
            products=np.asarray(products, dtype=object),
            ts=transactions["order_ts"].to_numpy(dtype="datetime64[ns]").view("int64"),
            quantity=transactions["quantity"].to_numpy(dtype=float),
            amount=transactions["amount"].to_numpy(dtype=float),
            unit_price=transactions["unit_price"].to_numpy(dtype=float)
            if "unit_price" in transactions
            else None,
        )


def refactorize(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes of a subset of lines renumbered 0..k-1 in order of first appearance, and the
    original code of each: what factorizing the subset's ids gives, at integer speed."""
    return pd.factorize(codes)
