"""The catalog forecaster's blocking gates (assets/catalog.py runs them before anything is
registered or published): it beats seasonal naive where it is built for, every level sums from
its product-store forecasts, the forecasts are sane, and the bands hold on the holdout."""

import dagster as dg
import numpy as np
import pandas as pd

from mlops_assets.checks.gates import Gate
from mlops_assets.core.catalog_model import LEVEL
from mlops_assets.core.hierarchy import Hierarchy

MODEL = "catalog_forecaster"
GATES = {
    "beats_naive": Gate(
        "catalog_beats_seasonal_naive",
        MODEL,
        "Geometric mean over product-store series of the point forecasts' holdout MAE relative to "
        "seasonal naive's (the last fold, which no choice saw) is at most forecast.max_relative_mase. "
        "The point is the reconciled mean, or the median model's forecast where it won the last "
        "selection fold.",
        remedy="give the series more history, or raise forecast.max_relative_mase",
    ),
    "coherent": Gate(
        "catalog_is_coherent",
        MODEL,
        "Every level's forecast equals the sum of its product-store forecasts (within 1e-6 relative), "
        "period by period.",
        remedy="nothing in the data: reconciliation broke; report it with this run's id",
    ),
    "sane": Gate(
        "catalog_forecasts_are_sane",
        MODEL,
        "No NaN, no negative revenue (mean, bands, point), the 95% band holds the 80% band which "
        "holds the mean.",
        remedy="nothing in the data: a model gave an invalid forecast; report it with this run's id",
    ),
    "coverage": Gate(
        "catalog_interval_coverage_within_tolerance",
        MODEL,
        "Holdout coverage of the product-store 80% and 95% bands (calibrated on the earlier folds) is "
        "not more than forecast.coverage_tolerance below nominal.",
        remedy="calibrate on more history (forecast.folds), or widen forecast.coverage_tolerance",
    ),
}


def coherence_result(h: Hierarchy, forecasts: pd.DataFrame) -> dg.AssetCheckResult:
    horizon = int(forecasts["step"].max())
    mean = forecasts.set_index(["series_id", "step"])["mean"].unstack("step").reindex(h.ids).to_numpy()
    summed = np.asarray(h.S @ mean[-h.n_bottom :])
    gap = np.abs(summed - mean) / np.maximum(np.abs(summed), 1.0)
    worst = int(np.nanargmax(gap.max(axis=1))) if np.isfinite(gap).any() else 0
    ok = bool(np.isfinite(mean).all() and gap.max() <= 1e-6)
    text = (
        f"{len(h.ids)} series x {horizon} periods: every level sums from its {h.n_bottom} product-store "
        "forecasts" if ok else
        f"{h.ids[worst]} differs from the sum of its product-store forecasts by up to {gap[worst].max():.2%}"
    )  # fmt: skip
    return GATES["coherent"].result(ok, text, {"max_relative_gap": float(np.nanmax(gap))})


def coverage_result(metrics: dict[str, float], tolerance: float) -> dg.AssetCheckResult:
    cover = {lvl: metrics[f"coverage{lvl}_{LEVEL}"] for lvl in (80, 95)}
    short = [f"{lvl}% band covers {c:.1%}" for lvl, c in cover.items() if c < lvl / 100 - tolerance]
    text = ", ".join(f"{lvl}% band {c:.1%}" for lvl, c in cover.items())
    return GATES["coverage"].result(
        not short,
        f"holdout coverage of the product-store bands: {text}"
        + (
            f": more than {tolerance:.0%} below nominal ({'; '.join(short)})"
            if short
            else f" (within {tolerance:.0%} of nominal or above)"
        ),  # fmt: skip
        {f"coverage{lvl}": c for lvl, c in cover.items()},
    )


def beats_naive_result(metrics: dict[str, float], threshold: float) -> dg.AssetCheckResult:
    figure = metrics[f"geomean_relative_mase_point_{LEVEL}"]
    ok = bool(np.isfinite(figure) and figure <= threshold)
    mean = metrics[f"geomean_relative_mase_{LEVEL}"]
    text = (
        f"product-store point forecasts' holdout MAE relative to seasonal naive {figure:.3f} "
        f"(geometric mean; the reconciled mean alone {mean:.3f}) "
    ) + (
        f"<= forecast.max_relative_mase {threshold:g}"
        if ok
        else f"exceeds forecast.max_relative_mase {threshold:g}"
    )
    return GATES["beats_naive"].result(
        ok, text, {"geomean_relative_mase": figure, "geomean_relative_mase_mean": mean}
    )
