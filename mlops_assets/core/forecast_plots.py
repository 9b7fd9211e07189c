"""Forecast plots as PNG embedded in markdown, for the Dagster UI's metadata panel."""

from __future__ import annotations

import pandas as pd

from mlops_assets.core.plots import png_md, pyplot

HISTORY = {"D": 180, "W": 104}  # periods of history shown before the forecast


def forecast_plot_md(y: pd.Series, result, freq: str = "D") -> str:
    """History, the chosen model's backtest forecasts, and the future forecast with its 80%
    and 95% bands."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=80)
    recent = y.iloc[-HISTORY.get(freq, 180) :]
    ax.plot(recent.index, recent.to_numpy(), color="0.3", lw=0.8, label="actual")
    folds = sorted(k[1] for k in result.fold_forecasts if k[0] == result.chosen)
    for i, fold in enumerate(folds):
        fc = result.fold_forecasts[(result.chosen, fold)]
        ax.plot(fc.index, fc.mean, color="tab:orange", lw=1, label="backtest" if i == 0 else None)
    fut = result.future
    ax.fill_between(fut.index, fut.lower95, fut.upper95, color="tab:blue", alpha=0.15, label="95%")
    ax.fill_between(fut.index, fut.lower80, fut.upper80, color="tab:blue", alpha=0.3, label="80%")
    ax.plot(fut.index, fut.mean, color="tab:blue", lw=1.2, label=f"forecast ({result.chosen})")
    ax.set_title(f"{result.series_id}: {result.chosen}, relative MASE {result.relative_mase:.2f}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", ncol=5)
    ax.tick_params(labelsize=7)
    return png_md(fig, result.series_id)
