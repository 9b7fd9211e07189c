"""Model cards: one markdown page per registered model version, from what MLflow recorded."""

from __future__ import annotations

import json

LIMITATIONS = {
    "sales_forecaster": "Forecasts assume the calendar effects seen in training continue: the weekly "
    "profile, each public holiday's factor learnt from past years (a holiday not yet seen is forecast "
    "as an ordinary day) and, for series that repeat their last year, the year-ago profile. Promotions "
    "are not in the data, so promotion-driven peaks are not anticipated. Intervals are conformal, "
    "calibrated on the backtest folds before the one they are scored on.",
    "customer_segmenter": "Segments describe recency, frequency and spend as of the feature date; they "
    "shift as customers age. Names are relative (quintiles among current customers), not absolute "
    "thresholds. Silhouette favours few broad segments.",
    "sales_anomaly_detector": "Days in a holiday window are judged against the same window in other years "
    "only; with one or two years of history an anomaly on such a day is mostly absorbed. Needs two "
    "years for a yearly profile.",
    "catalog_forecaster": "Per-series statistical models (exponential smoothing, window averages; Croston, "
    "ADIDA and IMAPA for intermittent demand) with no holiday or promotion effects; products with too "
    "short a "
    "history get their recent mean shaped by their category's weekly profile. Bands have one width per "
    "series over the horizon, calibrated on three backtest folds: a season unlike them (December) is "
    "under-covered. The `point` column is a median (a global LightGBM model) for the demand classes "
    "where it won the last selection fold: it does not sum across levels and is mostly zero on sparse "
    "series; use `mean` for totals and orders, `point` where absolute error is the measure.",
    "clv_model": "BG/NBD and Gamma-Gamma assume a stable purchase process and spend independent of "
    "frequency; new customers with one purchase get the population prior.",
}


def _section(title: str, rows: dict) -> str:
    if not rows:
        return f"### {title}\n\nnone recorded\n"
    lines = "\n".join(f"| {k} | {v} |" for k, v in sorted(rows.items()))
    return f"### {title}\n\n| item | value |\n|---|---|\n{lines}\n"


def model_card(name: str, version, run, limitations: str) -> str:
    """`version` an MLflow ModelVersion, `run` its MLflow Run."""
    prefix = f"{name}." if name != "clv_model" else "clv_model."
    tags = version.tags or {}
    params = {k.removeprefix(prefix): v for k, v in run.data.params.items() if k.startswith(prefix)}
    metrics = {
        k.removeprefix(prefix): round(v, 4) for k, v in run.data.metrics.items() if k.startswith(prefix)
    }
    tests = {k.removeprefix("stat."): v for k, v in tags.items() if k.startswith("stat.")}
    data = {
        "training rows": tags.get("training_rows", "?"),
        "training data hash": tags.get("training_data_hash", "?"),
        "features / inputs": params.get("features", params.get("levels", "see parameters")),
    }
    lineage = {
        "Dagster run": tags.get("dagster_run_id", "?"),
        "MLflow run": version.run_id,
        "asset": tags.get("asset_key", name),
        "code version": tags.get("code_version", "?"),
        "git commit": run.data.tags.get("mlops.git_commit", "?"),
        "replaced champion": tags.get("previous_champion", "none"),
    }
    decision = tags.get("decision", "pending")
    return "\n".join(
        [
            f"## {name} v{version.version}",
            "",
            f"**Decision:** {decision}. {tags.get('decision_reason', '')}",
            "",
            _section("Data", data),
            _section("Parameters", {k: v for k, v in params.items() if k != "features"}),
            _section("Metrics", metrics),
            _section("Promotion test", tests),
            "### Limitations\n\n" + limitations + "\n",
            _section("Lineage", lineage),
            f"<!-- {json.dumps({'model': name, 'version': str(version.version)})} -->",
        ]
    )
