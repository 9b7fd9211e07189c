"""Plots as PNG embedded in markdown, for the Dagster UI's metadata panel."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display: render to memory
    import matplotlib.pyplot as plt

    return plt


def png_md(fig, alt: str) -> str:
    """The figure as a markdown image (base64 PNG); closes the figure."""
    plt = pyplot()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return f"![{alt}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"


def png_of(md: str) -> bytes:
    """The PNG inside a markdown image made by png_md (to log it as a file elsewhere)."""
    return base64.b64decode(md.split("base64,", 1)[1].rstrip(")"))


def k_sweep_md(sweep: pd.DataFrame) -> str:
    """Silhouette, Davies-Bouldin and Calinski-Harabasz over k for k-means, DBSCAN as a point,
    the chosen setting circled."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(10, 2.8), dpi=80)
    km = sweep[sweep["algorithm"] == "kmeans"]
    db = sweep[sweep["algorithm"] == "dbscan"]
    chosen = sweep[sweep["chosen"]]
    for ax, metric, better in zip(
        axes,
        ("silhouette", "davies_bouldin", "calinski_harabasz"),
        ("higher is better", "lower is better", "higher is better"),
        strict=True,
    ):
        ax.plot(km["k"], km[metric], marker="o", ms=3, color="tab:blue", label="k-means")
        if len(db):
            ax.scatter(db["k"], db[metric], color="tab:orange", marker="s", label="DBSCAN", zorder=3)
        ax.scatter(chosen["k"], chosen[metric], s=120, facecolors="none", edgecolors="red", label="chosen")
        ax.set_title(f"{metric} ({better})", fontsize=8)
        ax.set_xlabel("clusters", fontsize=7)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    return png_md(fig, "k sweep")


def anomalies_md(scored: pd.DataFrame, series_id: str) -> str:
    """One series' revenue and expected profile with its anomalous periods marked."""
    plt = pyplot()
    rows = scored[scored["series_id"] == series_id].sort_values("period")
    fig, ax = plt.subplots(figsize=(9, 2.8), dpi=80)
    ax.plot(rows["period"], rows["revenue"], color="0.4", lw=0.7, label="revenue")
    ax.plot(rows["period"], rows["expected"], color="tab:blue", lw=0.8, alpha=0.7, label="expected")
    flagged = rows[rows["is_anomaly"]]
    colours = np.where(flagged["z"] > 0, "tab:red", "tab:purple")
    ax.scatter(flagged["period"], flagged["revenue"], c=colours, s=25, zorder=3, label="anomaly")
    ax.set_title(f"{series_id}: {len(flagged)} anomalous periods", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", ncol=3)
    ax.tick_params(labelsize=7)
    return png_md(fig, f"anomalies {series_id}")


def drift_md(report: pd.DataFrame, moderate: float, significant: float) -> str:
    """PSI per column (one bar per dataset.column), coloured by level, with the two cut-offs."""
    plt = pyplot()
    labels = (report["dataset"] + "." + report["column"]).tolist()
    values = report["psi"].to_numpy(dtype=float)
    level = np.where(values >= moderate, "tab:orange", "tab:green")
    colours = np.where(values >= significant, "tab:red", level)
    fig, ax = plt.subplots(figsize=(9, max(2.0, 0.22 * len(labels) + 0.8)), dpi=80)
    ax.barh(labels, values, color=colours)
    for cut, style in ((moderate, ":"), (significant, "--")):
        ax.axvline(cut, color="0.3", ls=style, lw=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("PSI (dotted: moderate, dashed: significant)", fontsize=7)
    ax.tick_params(labelsize=6)
    return png_md(fig, "drift per column")


def performance_md(table: pd.DataFrame, tolerance: float) -> str:
    """Rolling MASE against the backtest MASE per series; above the dashed line is degraded."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4), dpi=80)
    colours = np.where(table["degraded"], "tab:red", "tab:blue")
    ax.scatter(table["backtest_mase"], table["mase"], c=colours, s=18)
    top = float(np.nanmax(np.r_[table["backtest_mase"], table["mase"], 1.0]))
    grid = np.linspace(0, top * 1.05, 10)
    ax.plot(grid, grid, color="0.5", lw=0.8, label="as in backtest")
    ax.plot(grid, grid * (1 + tolerance), color="tab:red", ls="--", lw=0.8, label="degradation limit")
    ax.set_xlabel("backtest MASE", fontsize=8)
    ax.set_ylabel("rolling MASE on arrived actuals", fontsize=8)
    ax.legend(fontsize=7)
    return png_md(fig, "forecast performance")
