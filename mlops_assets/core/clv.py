"""Customer lifetime value: a BG/NBD purchase model and a Gamma-Gamma spend model, fitted by
maximum likelihood with scipy.optimize (Fader, Hardie & Lee 2005, "Counting your customers"
the easy way, and "RFM and CLV").

Time is in weeks. A transaction is a purchase day (several orders on one day count once, as in
the papers); x = repeat transactions, t_x = weeks from the first to the last, T = weeks from the
first to the end of the calibration period; m = mean revenue of the repeat transactions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import ibis
import numpy as np
import pandas as pd
from scipy import optimize, special

from mlops_assets.core import engine

WEEK = pd.Timedelta(days=7)


@dataclass(frozen=True)
class BGNBD:
    r: float
    alpha: float
    a: float
    b: float

    def expected_purchases(self, t: float, x, t_x, T) -> np.ndarray:
        """E[transactions in (T, T + t]] given the customer's (x, t_x, T). A customer without a
        repeat purchase (x = t_x = 0) depends on T alone, and T on the day of the first purchase:
        a chain's hundreds of thousands of them take a few hundred values, evaluated once each
        (the hypergeometric function is most of a snapshot's CLV time)."""
        x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
        once = (x == 0) & (t_x == 0)
        if once.sum() < 10_000:
            return self._expected(t, x, t_x, T)
        days, at = np.unique(T[once], return_inverse=True)
        out = np.empty(len(x))
        out[once] = self._expected(t, np.zeros(len(days)), np.zeros(len(days)), days)[at]
        out[~once] = self._expected(t, x[~once], t_x[~once], T[~once])
        return out

    def _expected(self, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        r, alpha, b = self.r, self.alpha, self.b
        a = self.a if abs(self.a - 1.0) > 1e-6 else 1.0 + 1e-6  # the formula divides by a - 1
        # the hypergeometric function reads x and T alone: a chain's million customers hold a
        # few thousand (x, T) pairs, each evaluated once (bitwise the same values)
        xs, ts, at = _pairs(x, T)
        hyp = special.hyp2f1(r + xs, b + xs, a + b + xs - 1.0, t / (alpha + ts + t))[at]
        head = (a + b + x - 1.0) / (a - 1.0)
        num = head * (1.0 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
        repeat = np.where(
            x > 0, a / np.maximum(b + x - 1.0, 1e-12) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0
        )
        return num / (1.0 + repeat)


def _pairs(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (x, y) pairs (exact values) and each row's pair."""
    cx, ux = pd.factorize(x, use_na_sentinel=False)
    cy, uy = pd.factorize(y, use_na_sentinel=False)
    at, pairs = pd.factorize(cx.astype(np.int64) * len(uy) + cy, use_na_sentinel=False)
    return ux[pairs // len(uy)], uy[pairs % len(uy)], at


@dataclass(frozen=True)
class GammaGamma:
    p: float
    q: float
    v: float

    def expected_spend(self, x, m) -> np.ndarray:
        """E[revenue per transaction]; the population mean for customers without repeats."""
        p, q, v = self.p, self.q, self.v
        x, m = np.asarray(x, dtype=float), np.asarray(m, dtype=float)
        population = p * v / (q - 1.0)
        own = p * (v + x * np.nan_to_num(m)) / (p * x + q - 1.0)
        return np.where(x > 0, own, population)


def _grouped(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Distinct rows and their counts: thousands of customers share few (x, t_x, T) triples."""
    table = pd.DataFrame({str(i): c for i, c in enumerate(columns)})
    counts = table.value_counts(sort=False)
    keys = counts.index.to_frame(index=False)
    return [keys[str(i)].to_numpy(dtype=float) for i in range(len(columns))], counts.to_numpy(dtype=float)


class _ByValue:
    """A function of x evaluated once per distinct x (customers' repeat counts take a few dozen
    values) and spread back to every row."""

    def __init__(self, x: np.ndarray):
        self.values, self.inverse = np.unique(x, return_inverse=True)

    def __call__(self, fn, shift: float, scale: float = 1.0) -> np.ndarray:
        return fn(shift + scale * self.values)[self.inverse]


def bgnbd_objective(params, x, t_x, T, w, by_x: _ByValue) -> tuple[float, np.ndarray]:
    """The weighted mean negative log-likelihood and its gradient in (r, alpha, a, b) in one pass
    (the terms the log-likelihood and its gradient share computed once; functions of x
    alone once per distinct x); equal to the reference in mlops_assets_tests/clv_reference.py
    up to rounding."""
    r, alpha, a, b = params
    gl, psi = special.gammaln, special.digamma
    log_aT, log_at = np.log(alpha + T), np.log(alpha + t_x)
    stay = -(r + x) * log_aT
    safe = np.maximum(b + x - 1.0, 1e-12)
    drop = np.where(x > 0, np.log(a) - np.log(safe) - (r + x) * log_at, -np.inf)
    total = np.logaddexp(stay, drop)
    ll = by_x(gl, r) - gl(r) + r * np.log(alpha) + gl(a + b) + by_x(gl, b) - gl(b) - by_x(gl, a + b) + total
    if not np.isfinite(ll).all():
        return np.inf, np.zeros(4)
    w_stay, w_drop = np.exp(stay - total), np.exp(drop - total)
    psi_abx = by_x(psi, a + b)
    grad = np.array(
        [
            w @ (by_x(psi, r) - w_stay * log_aT - w_drop * log_at) + w.sum() * (np.log(alpha) - psi(r)),
            w @ (r / alpha - w_stay * (r + x) / (alpha + T) - w_drop * (r + x) / (alpha + t_x)),
            w @ (psi(a + b) - psi_abx + w_drop / a),
            w @ (psi(a + b) + by_x(psi, b) - psi(b) - psi_abx - w_drop / safe),
        ]
    )
    total_w = w.sum()
    return -float(w @ ll) / total_w, -grad / total_w


def gamma_gamma_objective(params, x, m, log_m, by_x: _ByValue) -> tuple[float, np.ndarray]:
    """The mean negative log-likelihood of the Gamma-Gamma model and its gradient in (p, q, v),
    functions of x alone once per distinct x; equal to the reference likelihood and
    gradient (mlops_assets_tests/clv_reference.py) up to rounding."""
    p, q, v = params
    gl, psi = special.gammaln, special.digamma
    px = p * x
    log_xmv = np.log(x * m + v)
    log_x = by_x(np.log, 0.0)
    ll = (
        by_x(gl, q, p)
        - gl(q)
        + q * np.log(v)
        + (px - 1) * log_m
        + px * log_x
        - (px + q) * log_xmv
        - by_x(gl, 0.0, p)
    )
    if not np.isfinite(ll).all():
        return np.inf, np.zeros(3)
    psi_pxq = by_x(psi, q, p)
    n = len(x)
    grad = np.array(
        [
            (x * (psi_pxq - by_x(psi, 0.0, p) + log_m + log_x - log_xmv)).sum(),
            (psi_pxq - log_xmv).sum() + n * (np.log(v) - psi(q)),
            n * q / v - ((px + q) / (x * m + v)).sum(),
        ]
    )
    return -float(ll.mean()), -grad / n


def _fit_joint(objective, start: np.ndarray) -> np.ndarray:
    """Maximize over log-parameters (keeps them positive) with the value and gradient from one
    call; Nelder-Mead on the value alone rescues a stalled start."""

    def in_logs(log_params):
        params = np.exp(log_params)
        value, grad = objective(params)
        return value, grad * params  # chain rule: d/d log(theta) = theta * d/d theta

    result = optimize.minimize(in_logs, np.log(start), jac=True, method="L-BFGS-B")
    if not result.success or not np.isfinite(result.fun):
        result = optimize.minimize(
            lambda lp: in_logs(lp)[0], np.log(start), method="Nelder-Mead", options={"maxiter": 4000}
        )
    return np.exp(result.x)


def fit_bgnbd(x, t_x, T, start: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)) -> BGNBD:
    (xu, tu, Tu), w = _grouped(np.asarray(x), np.asarray(t_x), np.asarray(T))
    by_x = _ByValue(xu)
    params = _fit_joint(lambda p: bgnbd_objective(p, xu, tu, Tu, w, by_x), np.asarray(start, dtype=float))
    return BGNBD(*map(float, params))


def fit_gamma_gamma(x, m, start: tuple[float, ...] = (1.0, 2.0, 1.0)) -> GammaGamma:
    x, m = np.asarray(x, dtype=float), np.asarray(m, dtype=float)
    keep = (x > 0) & (m > 0)
    x, m = x[keep], m[keep]
    scale = float(np.median(m)) if len(m) else 1.0  # fit in units of the median spend
    m = m / scale
    log_m, by_x = np.log(m), _ByValue(x)
    p, q, v = _fit_joint(
        lambda prm: gamma_gamma_objective(prm, x, m, log_m, by_x), np.asarray(start, dtype=float)
    )
    return GammaGamma(float(p), float(q), float(v) * scale)


@dataclass(frozen=True)
class CLVModel:
    purchases: BGNBD
    spend: GammaGamma
    customers: int

    def predict(self, summary: pd.DataFrame, horizon_days: float = 365.0) -> pd.Series:
        """Expected gross revenue over the horizon for each row of an `rfm_summary` frame."""
        t = horizon_days / 7.0
        # plain arrays: numpy asking a Series keyed by a million ids for its array interface
        # makes pandas hash the whole index
        x, t_x, T, m = (summary[c].to_numpy(dtype=float) for c in ("x", "t_x", "T", "m"))
        n = self.purchases.expected_purchases(t, x, t_x, T)
        spend = self.spend.expected_spend(x, m)
        return pd.Series(n * spend, index=summary.index, name="clv")

    def params(self) -> dict[str, float]:
        return {**asdict(self.purchases), **asdict(self.spend)}


def _purchases(lines: ibis.Table) -> ibis.Table:
    """Purchase lines of known customers (returns and guest lines leave the CLV inputs)."""
    return lines.filter((lines.quantity > 0) & lines.customer_id.notnull())


def rfm_summary(transactions: pd.DataFrame | ibis.Table, as_of: pd.Timestamp) -> pd.DataFrame:
    """Per customer (sorted by id), from purchase lines strictly before as_of: x, t_x, T
    (weeks), m. The lines (a frame, or an Ibis table on the engine) are summed per customer and
    day in the engine, out of core; one row per customer comes back."""
    as_of = pd.Timestamp(as_of)
    buys = _purchases(engine.as_table(transactions))
    buys = buys.filter(buys.order_ts < as_of.to_pydatetime())
    daily = buys.group_by([buys.customer_id, buys.order_ts.truncate("D").name("day")]).aggregate(
        amount=engine.exact_sum(buys.amount)
    )
    per = daily.group_by("customer_id").aggregate(
        first=daily.day.min(),
        last=daily.day.max(),
        days=daily.count(),
        repeat_revenue=(daily.amount.sum() - daily.amount.argmin(daily.day)).cast("float64"),
    )
    per = engine.to_frame(per.order_by("customer_id")).set_index("customer_id")
    first, last = (per[c].astype("datetime64[ns]") for c in ("first", "last"))
    x = per["days"] - 1
    return pd.DataFrame(
        {
            "x": x.astype(float),
            "t_x": (last - first) / WEEK,
            "T": (as_of.floor("D") - first) / WEEK,
            "m": (per["repeat_revenue"] / x.where(x > 0)).astype(float),
        }
    )


MIN_REPEAT_CUSTOMERS = 20  # fewer customers with a repeat purchase cannot identify the models


def can_fit(summary: pd.DataFrame) -> bool:
    return int(((summary["x"] > 0) & (summary["m"] > 0)).sum()) >= MIN_REPEAT_CUSTOMERS


# the models have seven parameters: a chain's million customers pin them no better than a
# sample of this many does (standard errors shrink as 1/sqrt(n): about 0.5% here), and the fit's
# cost follows the customers it sees. Customers above it are sampled by a hash of their id, so
# an instant's sample holds the previous instant's sampled customers (the fit moves smoothly).
MAX_FIT_CUSTOMERS = 50_000


def fit_sample(summary: pd.DataFrame, limit: int = MAX_FIT_CUSTOMERS) -> pd.DataFrame:
    """The summary's rows the models are fitted on: all of them up to `limit`, else about
    `limit` of them chosen by a hash of the customer id (the same customers at every instant;
    a `sample_bucket` column holds the hashes when the caller keeps them)."""
    if len(summary) <= limit:
        return summary
    buckets = summary[BUCKET] if BUCKET in summary else id_buckets(summary.index)
    return summary[buckets.to_numpy() < np.uint64(BUCKETS * limit // len(summary))]


BUCKET, BUCKETS = "sample_bucket", 1_000_003


def id_buckets(ids) -> pd.Series:
    """A customer's place in the fit's sampling, from a hash of its id alone."""
    text = np.asarray(pd.Index(ids).astype(str), dtype=object)
    return pd.Series(pd.util.hash_array(text, categorize=False) % np.uint64(BUCKETS), index=ids)


def fit_clv(summary: pd.DataFrame, limit: int = MAX_FIT_CUSTOMERS) -> CLVModel:
    if not can_fit(summary):
        raise ValueError(f"fewer than {MIN_REPEAT_CUSTOMERS} customers with a repeat purchase: no CLV fit")
    fitted = fit_sample(summary, limit)
    purchases = fit_bgnbd(fitted["x"], fitted["t_x"], fitted["T"])
    spend = fit_gamma_gamma(fitted["x"], fitted["m"])
    return CLVModel(purchases, spend, customers=len(fitted))


def validate_clv(
    transactions: pd.DataFrame | ibis.Table, calibration_end: pd.Timestamp, holdout_days: int = 365
) -> dict:
    """Fit on lines before `calibration_end`, predict the next `holdout_days` of gross revenue
    per calibration customer, and compare with the naive "next period = last period" guess.
    The lines (a frame or an Ibis table) are summed per customer in the engine."""
    summary = rfm_summary(transactions, calibration_end)
    model = fit_clv(summary)
    predicted = model.predict(summary, holdout_days)
    end = calibration_end + pd.Timedelta(days=holdout_days)
    start = calibration_end - pd.Timedelta(days=holdout_days)
    buys = _purchases(engine.as_table(transactions))
    ts, cut = buys.order_ts, calibration_end.to_pydatetime()
    sums = buys.filter((ts >= start.to_pydatetime()) & (ts < end.to_pydatetime()))
    sums = sums.group_by("customer_id").aggregate(
        actual=engine.exact_float_sum(sums.amount, where=sums.order_ts >= cut),
        naive=engine.exact_float_sum(sums.amount, where=sums.order_ts < cut),
    )
    sums = engine.to_frame(sums).set_index("customer_id")
    actual = sums["actual"].astype(float).reindex(summary.index).fillna(0.0)
    naive = sums["naive"].astype(float).reindex(summary.index).fillna(0.0)

    def errors(guess: pd.Series) -> dict[str, float]:
        diff = guess - actual
        return {
            "mae": float(diff.abs().mean()),
            "rmse": float(np.sqrt((diff**2).mean())),
            "total_error_pct": float(100 * (guess.sum() - actual.sum()) / max(actual.sum(), 1e-9)),
        }

    model_err, naive_err = errors(predicted), errors(naive)
    return {
        "calibration_end": calibration_end,
        "holdout_days": holdout_days,
        "customers": len(summary),
        "params": model.params(),
        "model": model_err,
        "naive": naive_err,
        "mae_ratio_vs_naive": model_err["mae"] / naive_err["mae"] if naive_err["mae"] else float("nan"),
    }
