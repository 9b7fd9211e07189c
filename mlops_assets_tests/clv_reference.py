"""The CLV models' log-likelihoods and gradients written out term by term, per customer, as in
Fader, Hardie & Lee (2005): the reference the fitted objectives (core/clv.py, one pass, shared
terms) are tested against."""

import numpy as np
from scipy import special


def bgnbd_log_likelihood(params, x, t_x, T) -> np.ndarray:
    r, alpha, a, b = params
    ln = np.log
    head = (
        special.gammaln(r + x)
        - special.gammaln(r)
        + r * ln(alpha)
        + special.gammaln(a + b)
        + special.gammaln(b + x)
        - special.gammaln(b)
        - special.gammaln(a + b + x)
    )
    stay = -(r + x) * ln(alpha + T)
    safe = np.maximum(b + x - 1.0, 1e-12)
    drop = np.where(x > 0, ln(a) - ln(safe) - (r + x) * ln(alpha + t_x), -np.inf)
    return head + np.logaddexp(stay, drop)


def gamma_gamma_log_likelihood(params, x, m) -> np.ndarray:
    p, q, v = params
    px = p * x
    return (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * np.log(v)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(x * m + v)
    )


def bgnbd_gradient(params, x, t_x, T) -> np.ndarray:
    """d log-likelihood / d (r, alpha, a, b) per customer (rows: parameters)."""
    r, alpha, a, b = params
    psi = special.digamma
    stay = -(r + x) * np.log(alpha + T)
    safe = np.maximum(b + x - 1.0, 1e-12)
    drop = np.where(x > 0, np.log(a) - np.log(safe) - (r + x) * np.log(alpha + t_x), -np.inf)
    total = np.logaddexp(stay, drop)
    w_stay, w_drop = np.exp(stay - total), np.exp(drop - total)
    d_r = psi(r + x) - psi(r) + np.log(alpha) - w_stay * np.log(alpha + T) - w_drop * np.log(alpha + t_x)
    d_alpha = r / alpha - w_stay * (r + x) / (alpha + T) - w_drop * (r + x) / (alpha + t_x)
    d_a = psi(a + b) - psi(a + b + x) + w_drop / a
    d_b = psi(a + b) + psi(b + x) - psi(b) - psi(a + b + x) - w_drop / safe
    return np.vstack([d_r, d_alpha, d_a, d_b])


def gamma_gamma_gradient(params, x, m) -> np.ndarray:
    """d log-likelihood / d (p, q, v) per customer (rows: parameters)."""
    p, q, v = params
    psi = special.digamma
    px = p * x
    d_p = x * (psi(px + q) - psi(px) + np.log(m) + np.log(x) - np.log(x * m + v))
    d_q = psi(px + q) - psi(q) + np.log(v) - np.log(x * m + v)
    d_v = q / v - (px + q) / (x * m + v)
    return np.vstack([d_p, d_q, d_v])


def bgnbd_expected_purchases(params, t, x, t_x, T) -> np.ndarray:
    """E[transactions in (T, T + t]] per customer, equation 10 of the paper, every row evaluated."""
    r, alpha, a, b = params
    hyp = special.hyp2f1(r + x, b + x, a + b + x - 1.0, t / (alpha + T + t))
    num = (a + b + x - 1.0) / (a - 1.0) * (1.0 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
    with np.errstate(divide="ignore"):
        repeat = np.where(x > 0, a / (b + x - 1.0) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0)
    return num / (1.0 + repeat)
