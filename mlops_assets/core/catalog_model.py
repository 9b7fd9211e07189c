"""The catalog forecaster as the registry holds it (one MLflow version: the reconciled,
coherent forecasts of every level with their bands, the choices behind them and the holdout
fold), and how a challenger meets the champion: on the same periods' actuals."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from mlops_assets.core.promotion import Decision
from mlops_assets.core.reconciliation import CatalogForecast

LEVEL = "product_store"  # where replenishment happens: the level the promotion test compares


@dataclass
class CatalogForecaster:
    method: str  # the reconciliation
    forecasts: pd.DataFrame  # series_id, level, period, step, model, mean, lower80 .. upper95
    choices: pd.DataFrame
    reconciliation: pd.DataFrame
    holdout: pd.DataFrame  # series_id, level, period, mean, actual
    metrics: dict[str, float]
    notes: list[str] = field(default_factory=list)
    trained_at: str = field(default_factory=lambda: pd.Timestamp.now(tz="UTC").isoformat())

    @classmethod
    def of(cls, result: CatalogForecast) -> CatalogForecaster:
        return cls(
            result.method, result.forecasts, result.choices, result.reconciliation, result.holdout,
            result.metrics, result.notes,
        )  # fmt: skip

    @property
    def expected(self) -> dict[str, dict[str, float]]:
        """Per series the holdout MASE: what monitoring holds live accuracy to."""
        mase = self.choices.set_index("series_id")["holdout_mase"]
        return {sid: {"mase": float(v)} for sid, v in mase.items()}

    def predict_frame(self, frame: pd.DataFrame | None = None) -> pd.DataFrame:
        """This version's forecasts (pyfunc's predict): of the series in `frame` when it has a
        series_id column, else of every series."""
        if frame is None or "series_id" not in frame:
            return self.forecasts
        return self.forecasts[self.forecasts["series_id"].isin(frame["series_id"])]


def compare(champion: CatalogForecaster, challenger: CatalogForecaster, alpha: float) -> Decision:
    """Promote when the challenger's holdout forecasts beat what the champion forecast for the
    same product-store periods (its own holdout fold, or the forecasts it issued), series by
    series: a one-sided Wilcoxon signed-rank test on the log ratio of their MAEs at level
    alpha. A challenger trained on newer data is promoted as a refresh unless the test finds the
    champion better, or when the champion forecast none of those periods (nothing to compare:
    the gates the challenger passed are the test)."""
    newer = bool(challenger.forecasts["period"].min() > champion.forecasts["period"].min())
    theirs = pd.concat([champion.holdout[["series_id", "period", "mean"]],
                        champion.forecasts[["series_id", "period", "mean"]]])  # fmt: skip
    ours = challenger.holdout[challenger.holdout["level"] == LEVEL]
    both = ours.merge(theirs.drop_duplicates(["series_id", "period"]), on=["series_id", "period"],
                      suffixes=("", "_champion"))  # fmt: skip
    if both.empty:
        if newer:
            return Decision(
                True,
                "refresh: the champion forecast none of the challenger's holdout "
                "periods, so there is nothing to compare on; the challenger passed its gates",
            )
        return Decision(False, "no common evaluation periods with the champion: kept the champion")
    err = (
        both.assign(
            challenger=(both["mean"] - both["actual"]).abs(),
            champion=(both["mean_champion"] - both["actual"]).abs(),
        )
        .groupby("series_id")[["challenger", "champion"]]
        .mean()
    )
    err = err[(err["challenger"] > 0) & (err["champion"] > 0)]
    periods = int(both["period"].nunique())
    if len(err) < 3:
        return Decision(
            newer,
            f"fewer than 3 product-store series with errors to compare over {periods} "
            "periods: " + ("a refresh on newer data" if newer else "kept the champion"),
        )
    log_ratio = np.log(err["challenger"] / err["champion"])
    ratio = float(np.exp(log_ratio.mean()))
    p_better = float(stats.wilcoxon(log_ratio, alternative="less").pvalue)
    p_worse = float(stats.wilcoxon(log_ratio, alternative="greater").pvalue)
    result = {"series": float(len(err)), "periods": float(periods), "geomean_mae_ratio": ratio,
              "p_value": p_better, "p_value_worse": p_worse}  # fmt: skip
    text = (f"over {len(err)} product-store series x {periods} periods both forecast, the challenger's "
            f"MAE is {ratio:.3f}x the champion's (geometric mean; Wilcoxon one-sided p {p_better:.3g} "
            f"better, {p_worse:.3g} worse)")  # fmt: skip
    if p_better < alpha:
        return Decision(True, f"challenger better: {text}", result)
    if newer and p_worse >= alpha:
        return Decision(
            True, f"refresh: trained on newer data and not worse at level {alpha:g}: {text}", result
        )
    return Decision(False, f"challenger not better at level {alpha:g}: {text}", result)
