"""Forecasting: sales series per level, and one pass that backtests the candidates per series,
ships the choice with conformal bands, gated on a holdout fold the choice never saw, and
forecasts the horizon."""

import json
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
from scipy import stats

from mlops_assets.assets._governance import TRACKED, champion_output, first_or, govern, not_registered
from mlops_assets.assets._lines import SILVER_IN, silver_lines
from mlops_assets.assets._metadata import frame_metadata, model_selected, only_selected, table_metadata
from mlops_assets.assets.features import feature_as_of
from mlops_assets.assets.partitions import SINGLE_RUN
from mlops_assets.automation.freshness import model_freshness
from mlops_assets.automation.jobs import AFTER_GATES, TRAINING_CONDITION
from mlops_assets.checks.gates import Gate, blocks
from mlops_assets.core import forecast_performance as fp
from mlops_assets.core import forecasting, schemas
from mlops_assets.core import series as series_core
from mlops_assets.core.forecast_plots import forecast_plot_md
from mlops_assets.core.monitoring import feature_columns, transaction_columns
from mlops_assets.core.plots import png_of
from mlops_assets.core.promotion import Decision, compare_forecasters
from mlops_assets.core.series import SEASON
from mlops_assets.resources.models import Champion
from mlops_assets.settings import Settings

GROUP = "forecasting"
MODEL = "sales_forecaster"
GATES = {
    "beats_naive": Gate(
        "beats_seasonal_naive",
        "sales_forecaster",
        "Median over series of the chosen model's MASE relative to seasonal naive on the holdout "
        "fold (the last backtest fold, which the choice never saw) is at most "
        "forecast.max_relative_mase.",
        remedy="give the series more history, add forecast.candidates, or raise forecast.max_relative_mase",
    ),
    "sane": Gate(
        "forecasts_are_sane",
        "sales_forecaster",
        "No NaN, no negative revenue, the 95% band holds the 80% band which holds the point, "
        "and intervals widen with the horizon.",
        remedy="nothing in the data: a model gave an invalid forecast; report it with this run's id",
    ),
    "coverage": Gate(
        "interval_coverage_within_tolerance",
        "forecast_backtest_report",
        "Holdout coverage (mean over series) of the chosen models' conformal 80% and 95% bands, "
        "calibrated on the earlier folds only, is not more than forecast.coverage_tolerance below "
        "nominal beyond chance (a one-sided binomial test over the holdout periods at 5%).",
        remedy="calibrate on more history (forecast.folds), or widen forecast.coverage_tolerance",
    ),
    "coverage_near": Gate(
        "interval_coverage_near_nominal",
        "forecast_backtest_report",
        "The same holdout coverage is within forecast.coverage_tolerance of nominal: a shortfall "
        "within chance, or bands that wide (wasteful, not unsafe), warns.",
        warns=True,
    ),
}
PLOTS = 4  # series plotted in the metadata: total first, then the largest


def plan(settings: Settings) -> forecasting.ForecastPlan:
    f = settings.forecast
    return forecasting.ForecastPlan(
        freq=f.freq,
        horizon=f.horizon,
        folds=f.folds,
        candidates=tuple(f.candidates),  # backtest.candidates always adds the baseline
        ensemble_size=f.ensemble_size,
        choice=f.choice,
        country=f.country,
        holiday_window=f.holiday_window,
    )


def coverage_result(
    report: pd.DataFrame, tolerance: float, alpha: float = 0.05
) -> tuple[dg.AssetCheckResult, dg.AssetCheckResult]:
    """Two checks of the chosen models' holdout coverage. Under-covering bands mislead a user
    (stock-outs planned as safe): `interval_coverage_within_tolerance` blocks when the coverage
    is more than `tolerance` below nominal and a one-sided binomial test at `alpha` says the
    shortfall is more than chance. The test counts holdout periods, not series x periods: series
    of one store and its total miss together. A shortfall within chance, or bands more than
    `tolerance` above nominal (wasteful but safe), fail `interval_coverage_near_nominal`, a
    warning that blocks nothing."""
    block, warn = GATES["coverage"], GATES["coverage_near"]
    if report.empty:
        text = "no series is long enough to backtest: no coverage to check"
        return block.result(True, text), warn.result(True, text)
    chosen = report[report["chosen"].fillna(False).astype(bool)]
    periods = int(chosen["holdout_periods"].max())
    text = f"holdout coverage of the chosen models over {periods} periods x {len(chosen)} series:"
    meta: dict = {"series": len(chosen), "holdout_periods": periods}
    under, over = [], []
    for level in (80, 95):
        c = float(chosen[f"holdout_coverage{level}"].mean())
        p = float(stats.binom.cdf(round(c * periods), periods, level / 100))  # P(this few | calibrated)
        meta |= {f"coverage{level}": c, f"coverage{level}_p_value": p}
        text += f" {level}% band {c:.1%} (binomial p {p:.3g});"
        if c < level / 100 - tolerance:
            under.append((level, c, p))
        elif c > level / 100 + tolerance:
            over.append((level, c))
    text = text.rstrip(";")
    if any(p < alpha for _, _, p in under):
        why = f"more than {tolerance:.0%} below nominal beyond chance at {alpha:g} (bands too narrow)"
        return block.result(False, f"{text}: {why}", meta), warn.result(False, f"{text}: {why}", meta)
    if under or over:
        why = "below nominal, within chance" if under else "above nominal (bands too wide)"
        passed = f"{text}: no shortfall beyond chance at {alpha:g}"
        return block.result(True, passed, meta), warn.result(
            False, f"{text}: more than {tolerance:.0%} {why}; a warning", meta
        )
    within = f"{text} (within {tolerance:.0%} of nominal)"
    return block.result(True, within, meta), warn.result(True, within, meta)


def beats_naive_result(choices: pd.DataFrame, threshold: float) -> dg.AssetCheckResult:
    median = float(choices["relative_mase"].median())
    ok = median <= threshold
    text = f"median holdout relative MASE {median:.3f} " + (
        f"<= forecast.max_relative_mase {threshold:g}"
        if ok
        else f"exceeds forecast.max_relative_mase {threshold:g}"
    )
    counts = choices["chosen_model"].value_counts().to_dict()
    return GATES["beats_naive"].result(
        ok, text, {"median_relative_mase": median, "chosen_models": json.dumps(counts)}
    )


def _out(description: str) -> dg.AssetOut:
    return dg.AssetOut(
        group_name=GROUP,
        kinds={"pandas", "duckdb"},
        is_required=False,  # published only when the gates pass
        metadata={"schema": GROUP},
        description=description,
        automation_condition=TRAINING_CONDITION,
    )


def recent(series: dict[str, pd.Series], days: int | None) -> dict[str, pd.Series]:
    """Each series' last `days` days (all of it when None)."""
    if days is None:
        return series
    cut = pd.Timedelta(days=days)
    return {sid: y[y.index > y.index[-1] - cut] if len(y) else y for sid, y in series.items()}


# a series table built from silver once its gates pass (sales_series, catalog_series)
SERIES_ASSET = {
    "group_name": GROUP,
    "kinds": {"pandas", "duckdb"},
    "metadata": {"schema": GROUP},
    "backfill_policy": SINGLE_RUN,
    "automation_condition": AFTER_GATES,
    "code_version": "1",
}


def build_forecasting_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    f = settings.forecast

    @dg.asset(**SERIES_ASSET, ins=SILVER_IN)
    def sales_series(bronze_products: pd.DataFrame) -> dg.Output:
        """Net revenue and units per complete period (forecast.freq) for the total, each store
        and each category (forecast.levels), zero-filled, with day of week and holiday counts.
        The lines are summed in the engine (DuckDB, out of core); only the totals per store,
        category and period come into the step."""
        with silver_lines(settings) as lines:
            end = feature_as_of(lines, settings)
            week_ends, stamped, weeks = series_core.week_ends_of(lines, f.freq, f.week_ends)
            built = series_core.sales_series(
                lines,
                bronze_products if len(bronze_products) else None,
                f.freq,
                f.top_levels,
                pd.Timestamp(settings.window.start_date),
                end,
                f.country,
                week_ends,
                stamped,
            )
        if f.freq == "W":
            built.notes.insert(0, weeks)
        table = built.frame
        return dg.Output(
            table,
            metadata={
                "series": len(built.ids()),
                "periods": int(table["period"].nunique()) if len(table) else 0,
                "first_period": str(table["period"].min()) if len(table) else "none",
                "last_period": str(table["period"].max()) if len(table) else "none",
                **({"week_ends": week_ends} if f.freq == "W" else {}),
                "notes": "\n".join(built.notes) or "none",
                **frame_metadata(table),
            },
        )

    @dg.multi_asset(
        outs={
            MODEL: dg.AssetOut(
                group_name=GROUP,
                kinds={"statsforecast", "mlflow"},
                io_manager_key="model_io_manager",  # a registered version: the registry holds it
                is_required=False,  # published only when the gates pass
                description="The forecaster: per series the chosen model and the fitted models behind "
                "it, with the forecasts they made, as a registered MLflow version (the choices, holdout "
                "relative MASE and coverage in metadata; downstream assets load the champion).",
                automation_condition=TRAINING_CONDITION,
                freshness_policy=model_freshness(settings),
            ),
            "forecast_choices": _out(
                "Per series: the chosen model and why, its holdout relative MASE and coverage (out of "
                "sample) beside the selection folds' figure."
            ),
            "forecast_backtest_report": _out(
                "Series x model: mean metrics over the selection folds (MAE, RMSE, MAPE, sMAPE, MASE, "
                "bias, directional accuracy, 80/95% coverage), the holdout fold's figures (the chosen "
                "model's with conformal bands) and the choice."
            ),
        },
        check_specs=[g.spec for g in GATES.values()],
        backfill_policy=SINGLE_RUN,
        can_subset=True,
        ins=SILVER_IN,
        code_version="1",
        **TRACKED,
    )
    def forecast_sales(
        context: dg.AssetExecutionContext,
        sales_series: pd.DataFrame,
        product_features: pd.DataFrame,
    ):
        built = series_core.SeriesSet(sales_series)
        series = recent(built.all_values(), f.history_days)
        started = time.perf_counter()

        def progress(done: int, total: int, result: forecasting.SeriesForecast) -> None:
            context.log.info(
                f"forecast_sales: series {done}/{total} ({result.series_id}: {result.chosen}) "
                f"{time.perf_counter() - started:.0f} s"
            )

        results = forecasting.forecast_all(series, plan(settings), workers=f.workers, progress=progress)
        choices = forecasting.choice_table(results)
        report = forecasting.backtest_table(results)
        forecasts = forecasting.forecast_table(results)
        checks = [
            beats_naive_result(choices, f.max_relative_mase),
            GATES["sane"].validate(schemas.forecast_schema(), forecasts, "the trained forecasts"),
            *coverage_result(report, f.coverage_tolerance),
        ]
        failed = [c for c in checks if blocks(c)]
        for c in checks:
            if not c.passed:
                (context.log.error if blocks(c) else context.log.warning)(c.description)
        if failed:
            if model_selected(context, MODEL):
                not_registered(context, "sales_forecaster", failed)
        elif not model_selected(context, MODEL):  # the tables alone
            floats = _floats(choices, report)
            yield from only_selected(context, _outputs(None, choices, report, floats, {}, {}))
        else:  # write-audit-publish: registry and tables only when every gate passed
            bundle = forecasting.ForecasterBundle.of(results, forecasts, report)
            folds = {r.series_id: r.fold_forecasts for r in results}

            def compare(champion_version) -> Decision:
                champion, _ = context.resources.registry.load(MODEL, version=champion_version.version)
                both = forecasting.backtest_missing(series, champion.choices, folds, plan(settings))
                newer = bool(forecasts["period"].min() > champion.forecasts["period"].min())
                return compare_forecasters(
                    champion.choices, bundle.choices, series, both, f.horizon, SEASON[f.freq],
                    settings.registry.alpha, newer,
                )  # fmt: skip

            floats = _floats(choices, report)
            plots = _plots(results, series, f.freq)
            governance = govern(
                context,
                MODEL,
                bundle,
                first_or(compare),
                params={**plan(settings).__dict__, "series": len(series), "history_days": f.history_days},
                metrics=floats,
                data=sales_series,
                # pyfunc answers with this version's forecasts, whatever series are asked for
                example=forecasts[["series_id"]].drop_duplicates().head(5),
                artifacts={
                    "backtest_report.csv": report,
                    "choices.csv": choices,
                    "forecasts.csv": forecasts,
                    **{f"{k}.png": png_of(v.value) for k, v in plots.items()},
                },
                reference=_reference(product_features, settings),
            )
            yield from only_selected(context, _outputs(bundle, choices, report, floats, plots, governance))
        yield from only_selected(context, checks)

    @dg.asset(**champion_output(GROUP))
    def sales_forecasts(sales_forecaster: Champion) -> dg.Output:
        """Next forecast.horizon periods per series (point forecast, 80% / 95% intervals) from
        the registry's champion forecaster: a rejected challenger leaves them as they were."""
        champion, version = sales_forecaster.model, sales_forecaster.number
        table = champion.forecasts.assign(
            model_version=pd.Series(version, index=champion.forecasts.index, dtype="string")
        )
        archived = archive_issued(champion, version, settings)
        return dg.Output(
            table,
            metadata={
                "rows": len(table),
                "issued_file": str(archived),
                "model_version": version,
                "model_uri": sales_forecaster.uri,
                "model_trained_at": champion.trained_at,
                "preview": table_metadata(table.head(10)),
            },
        )

    return [sales_series, forecast_sales, sales_forecasts]


def archive_issued(bundle, version: str, settings: Settings, folder: Path | None = None) -> Path:
    """Keep the forecasts as issued (one Parquet file per origin and version, never rewritten,
    under `folder`: the sales forecaster's by default) so that the performance assets can score
    them once their actuals arrive."""
    forecasts = bundle.forecasts
    step = pd.Timedelta(days=1) if settings.forecast.freq == "D" else pd.Timedelta(weeks=1)
    origin = pd.Timestamp(forecasts["period"].min()) - step if len(forecasts) else pd.Timestamp(0)
    path = (folder or settings.issued_forecasts_dir) / f"origin={origin.date()}_v{version}.parquet"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        frame = fp.issued(forecasts, origin, version, getattr(bundle, "expected", {}))
        tmp = path.with_suffix(".tmp")
        frame.to_parquet(tmp, index=False)
        tmp.replace(path)  # atomic: a reader never sees half a file
    return path


def _reference(products: pd.DataFrame, settings: Settings) -> dict[str, pd.DataFrame]:
    """What drift is later measured against: the transaction lines of the last
    monitoring.window_days of training (selected in the engine), and the product features at
    training."""
    out = {}
    with silver_lines(settings) as lines:
        if lines.count().to_pyarrow().as_py():
            as_of = feature_as_of(lines, settings)
            out["transactions"] = transaction_columns(lines, as_of, settings.monitoring.window_days)
    if len(products):
        out["product_features"] = feature_columns(products)
    return out


def _floats(choices: pd.DataFrame, report: pd.DataFrame) -> dict[str, float]:
    """Out-of-sample figures (the holdout fold), and the selection folds' in-sample one beside."""
    chosen = report[report["chosen"].fillna(False).astype(bool)]
    relative = choices["relative_mase"].clip(lower=1e-9)
    return {
        "median_relative_mase": float(relative.median()),
        "geomean_relative_mase": float(np.exp(np.log(relative).mean())),
        "selection_geomean_relative_mase": float(
            np.exp(np.log(choices["selection_relative_mase"].dropna().clip(lower=1e-9)).mean())
        ),
        "mean_chosen_mase": float(chosen["holdout_mase"].mean()),
        "mean_chosen_mape": float(chosen["holdout_mape"].mean()),
        "coverage80": float(chosen["holdout_coverage80"].mean()),
        "coverage95": float(chosen["holdout_coverage95"].mean()),
    }


def _plots(results, series, freq) -> dict[str, dg.MetadataValue]:
    ranked = sorted(series, key=lambda s: (s != "total", -series[s].sum()))[:PLOTS]
    by_id = {r.series_id: r for r in results}
    return {
        f"plot_{sid}": dg.MetadataValue.md(forecast_plot_md(series[sid], by_id[sid], freq)) for sid in ranked
    }


def _outputs(bundle, choices, report, floats, plots, governance):
    """The forecaster (when trained and registered), the choices and the backtest report."""
    chosen = report[report["chosen"].fillna(False).astype(bool)]
    if bundle is not None:
        yield dg.Output(
            bundle,
            output_name=MODEL,
            metadata={
                "series": len(choices),
                "choices": table_metadata(choices, 50),
                **floats,
                **governance,
                **plots,
            },
        )
    yield dg.Output(
        choices,
        output_name="forecast_choices",
        metadata={"series": len(choices), "choices": table_metadata(choices, 50), **floats},
    )
    yield dg.Output(
        report,
        output_name="forecast_backtest_report",
        metadata={"rows": len(report), "chosen": table_metadata(chosen.round(3), 50), **floats, **plots},
    )
