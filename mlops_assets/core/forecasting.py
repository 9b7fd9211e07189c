"""One series end to end (backtest, choose, refit, forecast) and many series fanned out over
a process pool whose width is a setting. Each worker pins BLAS/OpenMP to one thread so that
statsmodels' linear algebra and Prophet's Stan do not oversubscribe the cores."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlops_assets.core import backtest as bt
from mlops_assets.core.forecast_models import BASELINE, ENSEMBLE, Forecast, Model


@dataclass
class ForecastPlan:
    freq: str = "D"
    horizon: int = 28
    folds: int = 4  # the last is the holdout; the others choose the model and calibrate its bands
    candidates: tuple[str, ...] = ("seasonal_naive", "ets", "theta", "ces", "seasonal_ar")
    ensemble_size: int = 4
    choice: str = "combination"  # or "best": the lowest selection-fold MASE per series
    country: str = "US"
    # days (before, after) each public holiday whose effect is learnt from past years (None: off)
    holiday_window: tuple[int, int] | None = (-1, 4)


@dataclass
class SeriesForecast:
    series_id: str
    chosen: str
    reason: str
    relative_mase: float  # chosen / seasonal naive MASE on the holdout fold, which the choice never saw
    metrics: pd.DataFrame
    fold_forecasts: dict[tuple[str, int], Forecast]
    future: Forecast
    models: dict[str, Model]  # the fitted model(s) behind the shipped forecast
    descriptions: dict[str, str] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    # the chosen model on the holdout fold (bands calibrated on the selection folds), and the
    # selection folds' relative MASE, an in-sample figure of the choice
    holdout: dict[str, float] = field(default_factory=dict)
    selection_relative_mase: float = float("nan")


@dataclass
class ForecasterBundle:
    """What a forecaster training ships: the model choice per series, the fitted models behind
    it, and the forecasts they made (the batch output while this version is champion)."""

    choices: dict[str, str]
    models: dict[str, dict[str, Model]]
    forecasts: pd.DataFrame
    trained_at: str = field(default_factory=lambda: pd.Timestamp.now(tz="UTC").isoformat())
    # per series, the chosen model's backtest metrics: what monitoring holds live accuracy to
    expected: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def of(
        cls, results: list[SeriesForecast], forecasts: pd.DataFrame, report: pd.DataFrame | None = None
    ) -> ForecasterBundle:
        expected = {}
        if report is not None and len(report):  # the out-of-sample (holdout) figures
            chosen = report[report["chosen"].fillna(False).astype(bool)].set_index("series_id")
            expected = {
                sid: {k: row[f"holdout_{k}"] for k in ("mase", "mape", "coverage80", "coverage95")}
                for sid, row in chosen.iterrows()
            }
        return cls(
            {r.series_id: r.chosen for r in results},
            {r.series_id: r.models for r in results},
            forecasts,
            expected=expected,
        )

    def predict_frame(self, frame: pd.DataFrame | None = None) -> pd.DataFrame:
        """The forecasts of this version (pyfunc's predict)."""
        return self.forecasts


def forecast_series(series_id: str, y: pd.Series, spec: ForecastPlan) -> SeriesForecast:
    """Backtest every candidate, choose by mean MASE on the selection folds (seasonal naive
    unless beaten), score the choice on the holdout fold, refit it on the whole history and
    forecast the horizon with conformal bands from every fold. A series too short to backtest
    ships seasonal naive (its own intervals) with the reason."""
    models = bt.candidates(list(spec.candidates), spec.freq, spec.country, spec.holiday_window)
    try:
        result = bt.backtest(y, models, spec.horizon, spec.folds, spec.ensemble_size)
    except ValueError as exc:  # too short for the folds
        base = models[BASELINE].fit(y)
        return SeriesForecast(
            series_id, BASELINE, f"fallback to seasonal naive: {exc}", 1.0, pd.DataFrame(), {},
            base.predict(spec.horizon).non_negative(), {BASELINE: base}, {BASELINE: BASELINE},
        )  # fmt: skip
    chosen, reason, in_sample = bt.choose(result.metrics, spec.choice)
    if result.fold_length < spec.horizon:
        reason += f" (folds of {result.fold_length} periods: the history is too short for {spec.horizon})"
    held = bt.holdout(y, result, chosen, models[BASELINE].m)
    names = result.ensemble_members if chosen == ENSEMBLE else [chosen]
    fitted = {}
    for name in names:
        model = models[name].fresh()
        try:
            model.prepare(y)  # the form (ETS) or order (ARIMA) chosen again on the whole history
            fitted[name] = model.fit(y)
        except Exception as exc:  # passed the backtest, failed on the full history
            reason = f"{chosen} failed to refit ({exc}); fallback to seasonal naive"
            chosen, fitted = BASELINE, {BASELINE: models[BASELINE].fresh().fit(y)}
            held = bt.holdout(y, result, chosen, models[BASELINE].m)
            break
    future = Forecast.average([m.predict(spec.horizon).non_negative() for m in fitted.values()])
    future = bt.calibrated(y, result, chosen, future)
    return SeriesForecast(
        series_id, chosen, reason, held["relative_mase"], result.metrics, result.forecasts, future, fitted,
        result.descriptions, result.failures, held, in_sample,
    )  # fmt: skip


def single_threaded() -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "STAN_NUM_THREADS"):
        os.environ[var] = "1"
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _run(args: tuple[str, pd.Series, ForecastPlan]) -> SeriesForecast:
    """One series; an unexpected error ships seasonal naive for it instead of failing all."""
    series_id, y, spec = args
    try:
        return forecast_series(series_id, y, spec)
    except Exception as exc:
        base = bt.candidates([], spec.freq, spec.country)[BASELINE].fit(y)
        why = f"fallback to seasonal naive: {type(exc).__name__}: {exc}"[:300]
        future = base.predict(spec.horizon).non_negative()
        return SeriesForecast(series_id, BASELINE, why, 1.0, pd.DataFrame(), {}, future, {BASELINE: base})


def forecast_all(
    series: dict[str, pd.Series],
    spec: ForecastPlan,
    workers: int = 1,
    progress: Callable[[int, int, SeriesForecast], None] | None = None,
) -> list[SeriesForecast]:
    """Series are independent: with workers > 1 they spread over a process pool. `progress`
    hears of each series as it is done (done, total, result), in order."""
    jobs = [(sid, y, spec) for sid, y in series.items()]
    out: list[SeriesForecast] = []

    def collect(results) -> list[SeriesForecast]:
        for result in results:
            out.append(result)
            if progress is not None:
                progress(len(out), len(jobs), result)
        return out

    if workers <= 1 or len(jobs) <= 1:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # as in a worker, without changing this process for good
            return collect(_run(job) for job in jobs)
    with ProcessPoolExecutor(max_workers=workers, initializer=single_threaded) as pool:
        return collect(pool.map(_run, jobs, chunksize=1))


HOLDOUT = ("mase", "relative_mase", "mape", "coverage80", "coverage95", "periods")


def backtest_table(results: list[SeriesForecast]) -> pd.DataFrame:
    """Series x model: mean of each metric over the selection folds (the model's own intervals),
    the holdout fold's figures (the chosen model's with conformal bands), and the choice."""
    rows = []
    for r in results:
        if r.metrics.empty:
            continue
        picked = bt.selection(r.metrics)
        mean = picked.groupby("model")[list(bt.METRICS)].mean()
        base = mean.loc[BASELINE, "mase"] if BASELINE in mean.index else np.nan
        last = r.metrics[r.metrics["fold"] == r.metrics["fold"].max()].set_index("model")
        for model, values in mean.iterrows():
            held = dict(r.holdout) if model == r.chosen else {
                "mase": last.loc[model, "mase"],
                "relative_mase": bt.relative(last.loc[model, "mae"], last.loc[BASELINE, "mae"]),
                "mape": last.loc[model, "mape"],
                "coverage80": last.loc[model, "coverage80"],
                "coverage95": last.loc[model, "coverage95"],
                "periods": r.holdout.get("periods", np.nan),
            }  # fmt: skip
            rows.append(
                {
                    "series_id": r.series_id,
                    "model": model,
                    "spec": r.descriptions.get(model, model),
                    **values.to_dict(),
                    "relative_mase": values["mase"] / base if base and np.isfinite(base) else np.nan,
                    **{f"holdout_{k}": float(held.get(k, np.nan)) for k in HOLDOUT},
                    "chosen": model == r.chosen,
                }
            )
        for model, why in r.failures.items():
            rows.append({"series_id": r.series_id, "model": model, "spec": f"failed: {why}", "chosen": False})
    columns = ["series_id", "model", "spec", *bt.METRICS, "relative_mase", *(f"holdout_{k}" for k in HOLDOUT)]
    return pd.DataFrame(rows, columns=[*columns, "chosen"])


def choice_table(results: list[SeriesForecast]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "series_id": r.series_id,
                "chosen_model": r.chosen,
                "spec": r.descriptions.get(r.chosen, r.chosen),
                "relative_mase": r.relative_mase,
                "selection_relative_mase": r.selection_relative_mase,
                "holdout_coverage80": r.holdout.get("coverage80", np.nan),
                "holdout_coverage95": r.holdout.get("coverage95", np.nan),
                "reason": r.reason,
            }
            for r in results
        ]
    )


def forecast_table(results: list[SeriesForecast]) -> pd.DataFrame:
    parts = [r.future.frame().assign(series_id=r.series_id, model=r.chosen) for r in results]
    out = pd.concat(parts, ignore_index=True)
    out["step"] = out.groupby("series_id").cumcount() + 1
    return out[["series_id", "period", "step", "model", *Forecast.bands()]]


def backtest_missing(
    series: dict[str, pd.Series],
    choices: dict[str, str],
    fold_forecasts: dict[str, dict[tuple[str, int], Forecast]],
    spec: ForecastPlan,
) -> dict[str, dict[tuple[str, int], Forecast]]:
    """Fold forecasts for each series' model in `choices` that this run did not backtest (a
    champion's candidate since dropped from forecast.candidates), on the same folds, so that
    champion and challenger meet on the same evaluation data. A series where that model cannot
    be backtested stays without it (and leaves the comparison)."""
    out = {sid: dict(folds) for sid, folds in fold_forecasts.items()}
    for sid, name in choices.items():
        if sid not in series or any(key[0] == name for key in out.get(sid, {})):
            continue
        names = list(spec.candidates) if name == ENSEMBLE else [name]
        try:
            models = bt.candidates(names, spec.freq, spec.country, spec.holiday_window)
            ensemble = spec.ensemble_size if name == ENSEMBLE else 0
            result = bt.backtest(series[sid], models, spec.horizon, spec.folds, ensemble)
        except Exception:  # unknown model, too short, or failing: this series is not compared
            continue
        out.setdefault(sid, {}).update({k: v for k, v in result.forecasts.items() if k[0] == name})
    return out
