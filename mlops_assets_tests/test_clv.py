"""CLV: the BG/NBD and Gamma-Gamma fits recover the parameters of data simulated from them,
and the fitted model predicts a holdout year better than "next year = last year"."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from mlops_assets.core import clv
from mlops_assets_tests import clv_reference as ref

TRUE_BGNBD = {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.5}  # weeks
TRUE_SPEND = {"p": 6.0, "q": 4.0, "v": 15.0}
START = pd.Timestamp("2022-01-03")


def simulate_transactions(n: int, weeks: float, seed: int = 0) -> pd.DataFrame:
    """Order lines from the BG/NBD story: each customer buys at a Gamma-distributed rate and,
    after every repeat purchase, drops out with a Beta-distributed probability; each purchase
    is worth a Gamma draw around the customer's own Gamma-distributed mean."""
    rng = np.random.default_rng(seed)
    g = TRUE_BGNBD
    lam = rng.gamma(g["r"], 1 / g["alpha"], n)
    drop = rng.beta(g["a"], g["b"], n)
    nu = rng.gamma(TRUE_SPEND["q"], 1 / TRUE_SPEND["v"], n)
    birth = rng.uniform(0, weeks / 4, n)  # acquired during the first quarter of the period
    times, who = [birth], [np.arange(n)]
    t, alive = birth.copy(), np.ones(n, bool)
    while alive.any():
        t = t + rng.exponential(1 / np.maximum(lam, 1e-12))
        buy = alive & (t <= weeks)
        times.append(t[buy])
        who.append(np.flatnonzero(buy))
        alive = buy & (rng.random(n) >= drop)
    times, who = np.concatenate(times), np.concatenate(who)
    spend = rng.gamma(TRUE_SPEND["p"], 1 / nu[who])
    ts = START + pd.to_timedelta(np.floor(times * 7), unit="D") + pd.Timedelta(hours=12)
    return pd.DataFrame(
        {
            "order_id": [f"O{i}" for i in range(len(who))],
            "order_ts": ts,
            "customer_id": pd.array([f"C{c:06d}" for c in who], dtype="string[pyarrow]"),
            "quantity": 1.0,
            "amount": spend,
        }
    )


@pytest.fixture(scope="module")
def simulated() -> pd.DataFrame:
    return simulate_transactions(20_000, weeks=156)


def test_fit_recovers_the_simulated_parameters(simulated):
    calibration_end = START + pd.Timedelta(weeks=104)
    model = clv.fit_clv(clv.rfm_summary(simulated, calibration_end))
    got = model.params()
    # purchase days rounded to whole days blur t_x a little: the tolerances allow for that
    assert got["r"] == pytest.approx(TRUE_BGNBD["r"], rel=0.15)
    assert got["alpha"] == pytest.approx(TRUE_BGNBD["alpha"], rel=0.2)
    assert got["a"] == pytest.approx(TRUE_BGNBD["a"], rel=0.3)
    assert got["b"] == pytest.approx(TRUE_BGNBD["b"], rel=0.3)
    assert got["p"] == pytest.approx(TRUE_SPEND["p"], rel=0.15)
    assert got["q"] == pytest.approx(TRUE_SPEND["q"], rel=0.15)
    assert got["v"] == pytest.approx(TRUE_SPEND["v"], rel=0.2)


def test_expected_purchases_match_a_simulated_holdout(simulated):
    calibration_end = START + pd.Timedelta(weeks=104)
    summary = clv.rfm_summary(simulated, calibration_end)
    model = clv.fit_clv(summary)
    predicted = model.purchases.expected_purchases(52, summary["x"], summary["t_x"], summary["T"]).sum()
    hold = simulated[(simulated["order_ts"] >= calibration_end)]
    actual = hold["order_ts"].dt.floor("D").groupby(hold["customer_id"]).nunique().sum()
    assert predicted == pytest.approx(actual, rel=0.1)


def test_model_beats_the_naive_guess_on_a_holdout(simulated):
    report = clv.validate_clv(simulated, START + pd.Timedelta(weeks=104), holdout_days=364)
    assert report["model"]["mae"] < report["naive"]["mae"]
    assert abs(report["model"]["total_error_pct"]) < abs(report["naive"]["total_error_pct"])


def test_too_short_a_history_is_refused_not_fitted(simulated):
    summary = clv.rfm_summary(simulated, START + pd.Timedelta(days=3))
    assert not clv.can_fit(summary)
    with pytest.raises(ValueError, match="repeat purchase"):
        clv.fit_clv(summary)


def test_log_likelihood_matches_the_closed_form_for_one_customer():
    # x = 0: L = (alpha / (alpha + T))^r, the NBD probability of no purchase in (0, T]
    r, alpha, a, b, T = 0.5, 3.0, 1.2, 2.0, 10.0
    ll = ref.bgnbd_log_likelihood((r, alpha, a, b), np.array([0.0]), np.array([0.0]), np.array([T]))
    assert ll[0] == pytest.approx(r * np.log(alpha / (alpha + T)))


def test_analytic_gradients_match_finite_differences(simulated):
    summary = clv.rfm_summary(simulated, START + pd.Timedelta(weeks=104))
    x, t_x, T, m = (summary[c].to_numpy() for c in ("x", "t_x", "T", "m"))
    for params in ([0.25, 4.0, 0.8, 2.5], [1.3, 0.7, 2.0, 0.4]):
        approx = optimize.approx_fprime(
            np.asarray(params), lambda p: ref.bgnbd_log_likelihood(p, x, t_x, T).sum(), 1e-7
        )
        exact = ref.bgnbd_gradient(np.asarray(params), x, t_x, T).sum(axis=1)
        np.testing.assert_allclose(exact, approx, rtol=1e-4, atol=1e-3)
    repeat = (x > 0) & (m > 0)
    for params in ([6.0, 4.0, 15.0], [0.9, 2.5, 3.0]):
        approx = optimize.approx_fprime(
            np.asarray(params), lambda p: ref.gamma_gamma_log_likelihood(p, x[repeat], m[repeat]).sum(), 1e-7
        )
        exact = ref.gamma_gamma_gradient(np.asarray(params), x[repeat], m[repeat]).sum(axis=1)
        np.testing.assert_allclose(exact, approx, rtol=1e-4, atol=1e-3)


def test_one_pass_objectives_equal_the_reference_likelihoods_and_gradients(simulated):
    summary = clv.rfm_summary(simulated, START + pd.Timedelta(weeks=104))
    x, t_x, T, m = (summary[c].to_numpy() for c in ("x", "t_x", "T", "m"))
    (xu, tu, Tu), w = clv._grouped(x, t_x, T)
    assert len(xu) < len(x)  # the grouping is exercised: customers share triples
    for params in ([0.25, 4.0, 0.8, 2.5], [1.3, 0.7, 2.0, 0.4]):
        value, grad = clv.bgnbd_objective(np.asarray(params), xu, tu, Tu, w, clv._ByValue(xu))
        assert value == pytest.approx(-ref.bgnbd_log_likelihood(params, x, t_x, T).mean(), rel=1e-10)
        np.testing.assert_allclose(
            grad, -ref.bgnbd_gradient(np.asarray(params), x, t_x, T).mean(axis=1), rtol=1e-9
        )
    repeat = (x > 0) & (m > 0)
    xr, mr = x[repeat], m[repeat]
    for params in ([6.0, 4.0, 15.0], [0.9, 2.5, 3.0]):
        value, grad = clv.gamma_gamma_objective(np.asarray(params), xr, mr, np.log(mr), clv._ByValue(xr))
        assert value == pytest.approx(-ref.gamma_gamma_log_likelihood(params, xr, mr).mean(), rel=1e-10)
        np.testing.assert_allclose(
            grad, -ref.gamma_gamma_gradient(np.asarray(params), xr, mr).mean(axis=1), rtol=1e-9
        )


def test_the_gradient_fit_finds_the_finite_difference_optimum(simulated):
    """The fitted parameters are the optimum scipy finds from the reference likelihoods alone
    (finite differences, no analytic gradient)."""
    summary = clv.rfm_summary(simulated, START + pd.Timedelta(weeks=104))
    x, t_x, T, m = (summary[c].to_numpy() for c in ("x", "t_x", "T", "m"))
    exact = clv.fit_clv(summary).params()

    def optimum(neg_ll, start):
        return np.exp(optimize.minimize(neg_ll, np.log(start), method="L-BFGS-B").x)

    r, alpha, a, b = optimum(lambda lp: -ref.bgnbd_log_likelihood(np.exp(lp), x, t_x, T).mean(), [1.0] * 4)
    repeat = (x > 0) & (m > 0)
    scale = float(np.median(m[repeat]))
    p, q, v = optimum(
        lambda lp: -ref.gamma_gamma_log_likelihood(np.exp(lp), x[repeat], m[repeat] / scale).mean(),
        [1.0, 2.0, 1.0],
    )
    finite = {"r": r, "alpha": alpha, "a": a, "b": b, "p": p, "q": q, "v": v * scale}
    assert exact == pytest.approx(finite, rel=1e-3)


def test_the_features_clv_reads_the_grouped_summary_at_every_midnight(simulated):
    """clv_12m of the features (from the lines reduced per customer and day) is the model's
    prediction on rfm_summary's rows (grouped from the lines as of the instant)."""
    from mlops_assets.core.customer_features import customer_features

    model = clv.fit_clv(clv.rfm_summary(simulated, START + pd.Timedelta(weeks=104)))
    simulated = simulated.assign(product_id="P1")  # features count products too
    for weeks in (30, 104, 160):
        as_of = START + pd.Timedelta(weeks=weeks)
        table = customer_features(simulated, as_of, clv_model=model)
        expected = model.predict(clv.rfm_summary(simulated, as_of), 365.0)
        expected = expected.reindex(pd.Index(table["customer_id"].astype(object))).fillna(0.0)
        assert (expected > 0).sum() > 50
        np.testing.assert_allclose(table["clv_12m"].to_numpy(), expected.to_numpy(), rtol=1e-9)


def test_a_fit_on_a_hashed_sample_predicts_the_holdout_as_the_full_fit_does(simulated):
    """Above clv.MAX_FIT_CUSTOMERS the models are fitted on a sample chosen by a hash of the
    customer id: here 5,000 of 20,000. Out of sample (the year after calibration) the sample's
    predictions of every customer's purchases are as close to what happened as the full fit's,
    and the sample is the same customers at a later instant."""
    calibration_end = START + pd.Timedelta(weeks=104)
    summary = clv.rfm_summary(simulated, calibration_end)
    sample = clv.fit_sample(summary, 5_000)
    assert 4_500 < len(sample) < 5_500 and len(summary) > 15_000
    later = clv.fit_sample(clv.rfm_summary(simulated, calibration_end + pd.Timedelta(weeks=4)), 5_000)
    assert len(set(sample.index) & set(later.index)) > 0.9 * len(sample)
    full, sampled = clv.fit_clv(summary, limit=len(summary)), clv.fit_clv(summary, limit=5_000)
    assert sampled.customers == len(sample) and full.customers == len(summary)
    hold = simulated[simulated["order_ts"] >= calibration_end]
    actual = hold["order_ts"].dt.floor("D").groupby(hold["customer_id"]).nunique()
    actual = actual.reindex(summary.index, fill_value=0).to_numpy(dtype=float)

    def error(model: clv.CLVModel) -> tuple[float, float]:
        predicted = model.purchases.expected_purchases(52, summary["x"], summary["t_x"], summary["T"])
        return float(np.abs(predicted - actual).mean()), float(predicted.sum() / actual.sum() - 1)

    (full_mae, full_bias), (sample_mae, sample_bias) = error(full), error(sampled)
    print(f"holdout MAE full {full_mae:.4f} sample {sample_mae:.4f}; "
          f"bias {full_bias:+.3%} {sample_bias:+.3%}")
    assert sample_mae <= 1.02 * full_mae and abs(sample_bias) < 0.1
    assert clv.fit_sample(summary, len(summary)) is summary  # at or under the limit: every customer


def test_predictions_evaluated_once_per_shared_value_equal_every_rows_evaluation(simulated):
    """Customers without a repeat purchase (x = t_x = 0) are evaluated once per distinct T, and
    the hypergeometric function once per distinct (x, T): the numbers equal the paper's formula
    evaluated on every row, on a summary with tens of thousands of customers sharing values."""
    summary = clv.rfm_summary(simulated, START + pd.Timedelta(weeks=120))
    model = clv.fit_clv(summary)
    big = pd.concat([summary] * 4, ignore_index=True)
    x, t_x, T = (big[c].to_numpy(dtype=float) for c in ("x", "t_x", "T"))
    once = (x == 0) & (t_x == 0)
    assert once.sum() >= 10_000 and len(np.unique(T[once])) < once.sum() / 10 and (~once).any()
    assert len(clv._pairs(x[~once], T[~once])[0]) < (~once).sum() / 2  # repeat customers share (x, T)
    params = dataclasses.astuple(model.purchases)
    got = model.purchases.expected_purchases(52.0, x, t_x, T)
    np.testing.assert_allclose(got, ref.bgnbd_expected_purchases(params, 52.0, x, t_x, T), rtol=1e-13)
