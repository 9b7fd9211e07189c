"""Reading the prediction log (mlops-serve's served_predictions): the feature values that were
served or posted (for drift against the training data), and the champion / challenger answers
side by side (the shadow report: agreement, and accuracy once actuals arrive)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from scipy import stats

SEGMENTER, CLV = "customer_segmenter", "clv_model"
PAIR_COLUMNS = ["request_id", "route", "model", "champion_version", "challenger_version", "entity_id",
                "period", "kind", "champion_value", "challenger_value"]  # fmt: skip
REPORT_COLUMNS = ["model", "champion_version", "challenger_version", "requests", "compared", "agreement",
                  "mean_abs_difference", "actuals", "champion_mae", "challenger_mae", "challenger_win_share",
                  "p_value", "recommendation"]  # fmt: skip
CLV_AGREEMENT = 0.1  # two CLV answers agree within 10% of the larger (a value, not a label)
MIN_ACTUALS = 10  # forecast periods with actuals before the report recommends on accuracy


def _loads(text):
    return None if text is None or (isinstance(text, float) and np.isnan(text)) else json.loads(text)


def _ok(log: pd.DataFrame) -> pd.DataFrame:
    return log[log["status"] == 200]


def served_inputs(log: pd.DataFrame, champion_version: str | None) -> pd.DataFrame:
    """One row per customer feature vector the champion segmenter `champion_version` scored:
    the online features of GET /v1/customers/{id} answers and the instances of
    POST /v1/segments:score, with the route beside them."""
    rows = []
    for route, versions, inputs in _ok(log)[["route", "versions", "inputs"]].itertuples(index=False):
        version = (_loads(versions) or {}).get(SEGMENTER, {}).get("champion")
        if champion_version is not None and version != champion_version:
            continue
        if route == "customer":
            rows.append({"route": route, **(_loads(inputs) or {})})
        elif route == "segments_score":
            rows.extend({"route": route, **i} for i in _loads(inputs) or [])
    return pd.DataFrame(rows)


def shadow_pairs(log: pd.DataFrame) -> pd.DataFrame:
    """The answers of both aliases to the same request, one row per compared value: segment
    ids (labels), CLV values, and forecast means by period."""
    both = _ok(log)
    both = both[both["challenger_output"].notna()]
    rows = []
    for rec in both[["request_id", "route", "entity_id", "versions", "champion_output",
                     "challenger_output"]].itertuples(index=False):  # fmt: skip
        versions = _loads(rec.versions) or {}
        ours, theirs = _loads(rec.champion_output), _loads(rec.challenger_output)
        base = {"request_id": rec.request_id, "route": rec.route}

        def pair(model, entity, period, kind, a, b, versions=versions, base=base):
            v = versions.get(model, {})
            rows.append({**base, "model": model, "champion_version": v.get("champion"),
                         "challenger_version": v.get("challenger"), "entity_id": entity, "period": period,
                         "kind": kind, "champion_value": a, "challenger_value": b})  # fmt: skip

        if rec.route == "customer":
            for model, key, kind in ((SEGMENTER, "segment", "label"), (CLV, "clv_12m", "value")):
                a, b = ours.get(key), theirs.get(key)
                if a and b and a.get("model_version") != b.get("model_version"):
                    field = "segment_id" if kind == "label" else "value"
                    pair(model, rec.entity_id, None, kind, a[field], b[field])
        elif rec.route == "segments_score":
            for a, b in zip(ours["segments"], theirs["segments"], strict=True):
                pair(SEGMENTER, a.get("customer_id"), None, "label", a["segment_id"], b["segment_id"])
        elif rec.route == "forecast":
            for a, b in zip(ours["forecasts"], theirs["forecasts"], strict=False):
                pair(ours["model"], rec.entity_id, a["period"], "forecast", a["mean"], b["mean"])
    table = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    table["period"] = pd.to_datetime(table["period"])
    return table


def _agreement(group: pd.DataFrame) -> float:
    a = pd.to_numeric(group["champion_value"], errors="coerce")
    b = pd.to_numeric(group["challenger_value"], errors="coerce")
    if (group["kind"] == "label").all():
        return float((a == b).mean())
    scale = np.maximum(a.abs(), b.abs()).replace(0, np.nan)
    return float((((a - b).abs() / scale).fillna(0) <= CLV_AGREEMENT).mean())


def shadow_report(pairs: pd.DataFrame, actuals: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per (model, champion version, challenger version): requests both scored, how often
    they agreed, and, where actuals arrived (forecasts: `actuals` with series_id, period,
    actual), each one's MAE on the same periods, the challenger's share of wins, a one-sided
    Wilcoxon signed-rank p-value that the challenger's errors are smaller, and a
    recommendation for the promotion decision."""
    rows = []
    for (model, champ, chall), group in pairs.groupby(
        ["model", "champion_version", "challenger_version"], dropna=False, sort=True
    ):
        row = {"model": model, "champion_version": champ, "challenger_version": chall,
               "requests": group["request_id"].nunique(), "compared": len(group),
               "agreement": _agreement(group)}  # fmt: skip
        a = pd.to_numeric(group["champion_value"], errors="coerce")
        b = pd.to_numeric(group["challenger_value"], errors="coerce")
        labels = (group["kind"] == "label").all()
        row["mean_abs_difference"] = None if labels else float((a - b).abs().mean())
        row.update(_accuracy(group, actuals, alpha))
        rows.append(row)
    table = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    counts, text = ("requests", "compared", "actuals"), ("model", "champion_version", "challenger_version",
                                                         "recommendation")  # fmt: skip
    return table.astype(
        {c: "int64" if c in counts else "string" if c in text else "float64" for c in REPORT_COLUMNS}
    )


def _accuracy(group: pd.DataFrame, actuals: pd.DataFrame, alpha: float) -> dict:
    none = {"actuals": 0, "champion_mae": None, "challenger_mae": None, "challenger_win_share": None,
            "p_value": None}  # fmt: skip
    agreement = _agreement(group)
    if not (group["kind"] == "forecast").all() or actuals.empty:
        return {**none, "recommendation": f"no actuals for this model: agreement {agreement:.1%} only"}
    # one comparison per (series, period): the same forecast served many times counts once
    unique = group.drop_duplicates(["entity_id", "period"])
    joined = unique.merge(actuals, left_on=["entity_id", "period"], right_on=["series_id", "period"])
    n = len(joined)
    if n == 0:
        return {**none, "recommendation": "no actuals have arrived for the served periods yet"}
    err_a = (joined["champion_value"].astype(float) - joined["actual"]).abs()
    err_b = (joined["challenger_value"].astype(float) - joined["actual"]).abs()
    diff = (err_b - err_a).to_numpy()
    p = float(stats.wilcoxon(diff, alternative="less").pvalue) if n >= MIN_ACTUALS and diff.any() else None
    out = {"actuals": n, "champion_mae": float(err_a.mean()), "challenger_mae": float(err_b.mean()),
           "challenger_win_share": float((err_b < err_a).mean()), "p_value": p}  # fmt: skip
    if p is None:
        out["recommendation"] = f"{n} periods with actuals (at least {MIN_ACTUALS} needed): no evidence yet"
    elif p < alpha:
        out["recommendation"] = f"promote: the challenger's errors are smaller (p={p:.3g} < {alpha})"
    elif float(stats.wilcoxon(diff, alternative="greater").pvalue) < alpha:
        out["recommendation"] = "keep the champion: its errors are smaller on the served periods"
    else:
        out["recommendation"] = f"no significant difference on {n} periods (p={p:.3g})"
    return out
