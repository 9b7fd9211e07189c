"""Catalog-scale forecasting (core/catalog.py) on a small generated catalog (120 products in 5
stores, two years): coherent forecasts at every level with ordered, non-negative bands; chunks
that join to the same answer as one pass; a reasoned fallback for products launched lately;
the reconcilers as hierarchicalforecast computes them; and accuracy held out of sample."""

import numpy as np
import pandas as pd
import pytest

from mlops_assets.core import catalog, catalog_median, reconciliation
from mlops_assets.core.hierarchy import Hierarchy
from mlops_assets.sample_data.generator import generate

PERIODS = pd.date_range("2023-01-01", "2024-12-31", freq="D")
PLAN = catalog.CatalogPlan(horizon=14, folds=3, workers=1)


@pytest.fixture(scope="module")
def hierarchy() -> Hierarchy:
    d = generate(lines=60_000, n_products=120, seed=3)
    t = d.transactions
    t["period"] = pd.to_datetime(t["invoice_ts"], errors="coerce").dt.floor("D")
    t["revenue"] = pd.to_numeric(t["qty"], errors="coerce") * pd.to_numeric(t["unit_price"], errors="coerce")
    t = t.dropna(subset=["period", "revenue"]).merge(d.products[["sku", "category"]], on="sku")
    t = t[(t["revenue"].abs() < 1e5) & (t["revenue"] > 0)]
    g = t.groupby(["sku", "store", "category", "period"], as_index=False)["revenue"].sum()
    g = g.rename(columns={"sku": "product_id", "store": "store_id"})
    # a product launched 20 days before the end: too short to backtest
    late = g[g["product_id"] == g["product_id"].iloc[0]].copy()
    late = late.assign(product_id="PNEW", period=late["period"].sort_values().values)
    late = late[late["period"] >= PERIODS[-20]]
    if late.empty:
        late = pd.DataFrame({"product_id": ["PNEW"], "store_id": ["S01"], "category": [g["category"].iloc[0]],
                             "period": [PERIODS[-20]], "revenue": [50.0]})  # fmt: skip
    return Hierarchy.build(pd.concat([g, late], ignore_index=True), PERIODS)


@pytest.fixture(scope="module")
def result(hierarchy):
    base = catalog.backtest_rows(hierarchy, np.arange(len(hierarchy.ids)), PLAN)
    return base, reconciliation.reconcile(hierarchy, base, PLAN)


def test_forecasts_are_coherent_at_every_level_with_ordered_bands(hierarchy, result):
    _, res = result
    f = res.forecasts
    assert len(f) == len(hierarchy.ids) * PLAN.horizon
    assert f["period"].min() == PERIODS[-1] + pd.Timedelta(days=1)
    mean = f.pivot(index="series_id", columns="step", values="mean").loc[hierarchy.ids].to_numpy()
    bottom = mean[hierarchy.levels == "product_store"]
    np.testing.assert_allclose(hierarchy.S @ bottom, mean, rtol=1e-9, atol=1e-6)  # sums to every level
    assert (f["mean"] >= 0).all()
    assert (f["lower95"] <= f["lower80"]).all() and (f["lower80"] <= f["mean"]).all()
    assert (f["mean"] <= f["upper80"]).all() and (f["upper80"] <= f["upper95"]).all()
    assert (f["upper95"] > f["lower95"]).mean() > 0.9  # bands have width


def test_chunks_join_to_the_same_answer_as_one_pass(hierarchy, result):
    base, _ = result
    rows = np.arange(len(hierarchy.ids))
    parts = [catalog.backtest_rows(hierarchy, chunk, PLAN) for chunk in (rows[1::2], rows[::2])]
    joined = catalog.join(parts, len(rows))
    assert (joined.chosen == base.chosen).all()
    np.testing.assert_allclose(joined.final, base.final)
    np.testing.assert_allclose(joined.folds, base.folds)
    with pytest.raises(ValueError, match="the chunks cover"):
        catalog.join(parts[:1], len(rows))


def test_a_product_launched_lately_gets_the_fallback(hierarchy, result):
    base, res = result
    row = list(hierarchy.ids).index("product=PNEW")
    assert base.kinds[row] == "short" and base.chosen[row] == catalog.FALLBACK
    assert np.isfinite(base.final[row]).all() and base.final[row].sum() > 0
    assert any("recent_mean" in note for note in res.notes)
    # it had no sales at the folds' origins: it forecast nothing there
    assert np.all(base.folds[row, 0] == 0)


def test_intermittent_series_get_intermittent_candidates(hierarchy, result):
    base, _ = result
    kinds = pd.Series(base.kinds, index=hierarchy.levels)
    assert kinds.loc["total"] == "smooth" and (kinds.loc["product_store"] == "intermittent").mean() > 0.5
    intermittent = set(base.chosen[base.kinds == "intermittent"])
    assert intermittent <= {"combination", "seasonal_naive", "window_average", "seasonal_window_average",
                            "croston_sba", "adida", "imapa"}  # fmt: skip


def test_the_sparse_reconcilers_agree_with_hierarchicalforecasts_dense_ones(hierarchy):
    from hierarchicalforecast.methods import BottomUp, MinTrace

    rng = np.random.default_rng(0)
    y_hat = rng.gamma(2.0, 10.0, (len(hierarchy.ids), 5))
    dense = hierarchy.S.toarray()
    idx_bottom = np.flatnonzero(hierarchy.levels == "product_store")
    for ours, theirs in (("bottom_up", BottomUp()), ("mint_wls_struct", MinTrace(method="wls_struct"))):
        expected = theirs.fit_predict(S=dense, y_hat=y_hat)["mean"]
        expected = dense @ np.maximum(expected[idx_bottom], 0)  # the same non-negativity step
        # the sparse MinT solves iteratively (to about 1e-5 of the values), the dense one exactly
        atol = 1e-4 * np.abs(expected).mean()
        got = reconciliation.coherent(hierarchy, y_hat, ours)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=atol)

    # top-down by forecast proportions on the strict tree total > store > product-store, as the
    # dense TopDown computes it, then summed up to every level
    from hierarchicalforecast.methods import TopDown

    keep, tags = reconciliation.tree(hierarchy)
    top_down = TopDown(method="forecast_proportions")
    expected = top_down.fit_predict(S=dense[keep], y_hat=y_hat[keep], tags=tags)
    expected = dense @ np.maximum(expected["mean"][-hierarchy.n_bottom :], 0)
    got = reconciliation.coherent(hierarchy, y_hat, "top_down")
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    total = hierarchy.levels == "total"
    np.testing.assert_allclose(got[total], y_hat[total], rtol=1e-9)  # the total keeps its forecast


def test_accuracy_out_of_sample_beats_seasonal_naive_above_the_products(hierarchy, result):
    _, res = result
    assert res.method in catalog.RECONCILERS
    for level in ("total", "store", "category"):
        assert res.metrics[f"geomean_relative_mase_{level}"] < 0.9, res.metrics
    table = res.reconciliation
    assert set(table["method"]) == set(PLAN.reconcilers) and table["holdout_mase"].notna().all()
    assert 0.5 < res.metrics["coverage80"] < res.metrics["coverage95"] <= 1.0


def test_band_widths_follow_the_recent_level_even_where_returns_outweigh_sales():
    """Bands are sized relative to each series' recent level: a product whose returns outweighed
    its sales lately (negative net revenue) still gets a positive level, so ordered bands (its
    level had been negative, and its 80% band wider than its 95% one)."""
    bottom = pd.DataFrame(
        {
            "product_id": ["a"] * 4 + ["b"] * 4,
            "store_id": "s",
            "category": "x",
            "period": list(PERIODS[:4]) * 2,
            "revenue": [10.0, 10.0, -30.0, -10.0, 0.0, 4.0, 0.0, 8.0],
        }
    )
    h = Hierarchy.build(bottom, PERIODS[:4])
    level = reconciliation.recent_level(h, upto=3, periods=2)
    assert level[list(h.ids).index("product=a/store=s")] == 20.0  # |-30| and |-10|
    assert level[list(h.ids).index("product=b/store=s")] == 4.0
    assert (level > 0).all()


def test_the_median_model_is_the_point_forecast_where_it_wins_the_selection_fold(hierarchy, result):
    """The global median model (core/catalog_median.py) beside the reconciled mean: a demand class
    takes the median as its point forecast only when it scored better on the last selection fold;
    out of sample (the holdout fold, which neither the model nor the choice saw) the point beats
    the mean by absolute error, and the coherent mean is untouched at every level."""
    base, plain = result
    median = catalog_median.median_forecasts(hierarchy, PLAN)
    res = reconciliation.reconcile(hierarchy, base, PLAN, median)
    bottom = hierarchy.levels == "product_store"
    # the coherent mean and its bands are the same with or without the median model
    pd.testing.assert_frame_equal(res.forecasts.drop(columns=["point", "point_source"]),
                                  plain.forecasts.drop(columns=["point", "point_source"]))  # fmt: skip
    f = res.forecasts.set_index("series_id")
    above = f[f["level"] != "product_store"]
    assert (above["point"] == above["mean"]).all() and (above["point_source"] == "mean").all()
    # the choice, recomputed from the last selection fold's figures per demand class
    cut = catalog.cutoffs(hierarchy, PLAN)
    actual = np.nan_to_num(hierarchy.values[bottom][:, cut[-2] + 1 : cut[-2] + 1 + PLAN.horizon])
    naive = np.abs(base.baseline[bottom, -2] - actual).mean(axis=1)
    naive = np.where(naive > 0, naive, np.nan)
    mean_fold = reconciliation.coherent(hierarchy, base.folds[:, -2], res.method)[bottom]
    kinds = base.kinds[bottom]
    chosen = res.choices.set_index("series_id").loc[hierarchy.ids[bottom], "point_source"].to_numpy()
    for kind in ("smooth", "intermittent"):
        at = kinds == kind
        if not at.any():
            continue
        mean_fig = catalog_median.gmean(np.abs(mean_fold[at] - actual[at]).mean(axis=1) / naive[at])
        median_fig = catalog_median.gmean(np.abs(median.selection[at] - actual[at]).mean(axis=1) / naive[at])
        want = "median" if median_fig < mean_fig else "mean"
        assert (chosen[at] == want).all(), (kind, mean_fig, median_fig)
    assert (chosen[kinds == "short"] == "mean").all()
    assert (chosen == "median").any()  # on this mostly-zero catalog the median wins somewhere
    # what was published is the median model's final forecast where chosen
    ps = f[f["level"] == "product_store"]
    rows = {sid: i for i, sid in enumerate(hierarchy.ids[bottom])}
    picked = ps[ps["point_source"] == "median"]
    expected = median.final[[rows[s] for s in picked.index], picked["step"].to_numpy() - 1]
    np.testing.assert_allclose(picked["point"].to_numpy(), expected)
    # out of sample, by the loss the point is chosen for
    point = res.metrics["geomean_relative_mase_point_product_store"]
    assert point < res.metrics["geomean_relative_mase_product_store"], res.metrics
    assert point <= 0.85, res.metrics
    assert (res.forecasts["point"] >= 0).all() and res.forecasts["point"].notna().all()
