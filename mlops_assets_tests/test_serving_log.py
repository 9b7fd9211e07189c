"""The prediction log and what the graph reads from it, on small frames: unfinished and broken
lines, served inputs, and the shadow report's agreement, accuracy and recommendation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlops_assets.core import serving_monitor as sm
from mlops_assets.serving.app import Router
from mlops_assets.serving.config import ServingSettings
from mlops_assets.serving.predlog import PredictionLog, log_frame, read_log


def _record(i: int, route="customer", entity="C1", champion=None, challenger=None, inputs=None, **kw) -> dict:
    return {
        "ts": f"2024-01-01T00:00:{i % 60:02d}+00:00", "request_id": f"r{i}", "route": route,
        "entity_id": entity, "status": 200, "mode": "shadow", "served_by": "champion", "latency_ms": 0.5,
        "versions": {"customer_segmenter": {"champion": "1", "challenger": "2"},
                     "sales_forecaster": {"champion": "3", "challenger": "4"}},
        "inputs": inputs, "champion_output": champion, "challenger_output": challenger, "error": None, **kw,
    }  # fmt: skip


def test_the_log_keeps_every_complete_line_and_counts_the_rest(tmp_path):
    log = PredictionLog(tmp_path, flush_seconds=30)
    for i in range(5):
        log.append(_record(i))
    assert log.flush() == 5 and log.flush() == 0
    path = next(tmp_path.glob("predictions-*.jsonl"))
    with path.open("a") as fh:
        fh.write("{not json}\n")
        fh.write('{"route": "customer"}\n')  # JSON, but no time or status: not a record of this log
        fh.write(json.dumps({**_record(7), "ts": "yesterday-ish"}) + "\n")
        fh.flush()
        fh.buffer.write(b"\xff\xfe{\n")  # bytes that are not UTF-8
        fh.write(json.dumps(_record(9))[:40])  # a line the writer has not finished
    table, stats = read_log(tmp_path)
    assert len(table) == 5 and list(table["request_id"]) == [f"r{i}" for i in range(5)]
    assert stats == {"files": 1, "records": 5, "unfinished_lines": 1, "unreadable_lines": 4}
    assert str(table["ts"].dtype) == "datetime64[ns, UTC]" and table["status"].dtype == "int64"
    log.close()


def test_served_inputs_are_the_current_champions_feature_rows():
    rows = [
        _record(0, inputs={"recency_days": 3.0, "monetary": 10.0}),
        _record(1, route="segments_score", entity=None,
                inputs=[{"recency_days": 1.0, "monetary": 2.0}, {"recency_days": 5.0, "monetary": None}]),
        {**_record(2, inputs={"recency_days": 9.0}), "status": 404},
        {**_record(3, inputs={"recency_days": 7.0}),
         "versions": {"customer_segmenter": {"champion": "0", "challenger": None}}},
    ]  # fmt: skip
    current = sm.served_inputs(log_frame(rows), "1")
    assert current["recency_days"].tolist() == [3.0, 1.0, 5.0]  # not the 404, not another version's
    assert current["route"].tolist() == ["customer", "segments_score", "segments_score"]


def accurate_challenger_log() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A log of 30 daily forecasts of `total` served in shadow, the challenger's far closer to
    the actuals that arrived; and 10 customers the two segmenters disagree on 3 times."""
    rng = np.random.default_rng(0)
    periods = pd.date_range("2024-01-01", periods=30, freq="D")
    actual = rng.uniform(50, 150, len(periods))
    rows = []
    for i, (p, y) in enumerate(zip(periods, actual, strict=True)):
        good, bad = y + rng.normal(0, 2), y + rng.normal(0, 25)  # the challenger is the accurate one
        step = {"period": p.date().isoformat()}
        answer = lambda mean, step=step: {"model": "sales_forecaster", "forecasts": [{**step, "mean": mean}]}  # noqa: E731
        rows.append(
            _record(i, route="forecast", entity="total", champion=answer(bad), challenger=answer(good))
        )
    for i in range(10):  # the segmenters disagree on 3 of 10 customers
        seg = lambda v, s: {"segment": {"segment_id": s, "model_version": v}, "clv_12m": None}  # noqa: E731
        rows.append(_record(100 + i, entity=f"C{i}", champion=seg("1", 0), challenger=seg("2", int(i < 3))))
    return log_frame(rows), pd.DataFrame({"series_id": "total", "period": periods, "actual": actual})


def test_shadow_report_measures_agreement_and_recommends_on_actuals():
    log, actuals = accurate_challenger_log()
    report = sm.shadow_report(sm.shadow_pairs(log), actuals).set_index("model")
    seg = report.loc["customer_segmenter"]
    assert seg["agreement"] == pytest.approx(0.7) and seg["requests"] == 10 and seg["actuals"] == 0
    fc = report.loc["sales_forecaster"]
    assert (fc["champion_version"], fc["challenger_version"]) == ("3", "4")
    assert fc["actuals"] == 30 and fc["challenger_mae"] < fc["champion_mae"]
    assert fc["p_value"] < 0.05 and fc["recommendation"].startswith("promote")
    # the same answers the other way round: keep the champion
    swapped = log.rename(
        columns={"champion_output": "challenger_output", "challenger_output": "champion_output"}
    )
    back = sm.shadow_report(sm.shadow_pairs(swapped), actuals).set_index("model").loc["sales_forecaster"]
    assert back["recommendation"].startswith("keep the champion")
    # before the actuals arrive: no verdict on accuracy
    early = (
        sm.shadow_report(sm.shadow_pairs(log), actuals.iloc[:0]).set_index("model").loc["sales_forecaster"]
    )
    assert early["actuals"] == 0 and "agreement" in early["recommendation"]


@pytest.mark.parametrize(
    "mode, share, expected", [("shadow", 0.5, 0.0), ("canary", 0.25, 0.25), ("champion", 1, 0)]
)
def test_the_router_sends_the_canary_share_to_the_challenger(mode, share, expected):
    router = Router(ServingSettings(mode=mode, canary_share=share), seed=1)
    routes = [router.route(True) for _ in range(20_000)]
    assert np.mean([alias == "challenger" for alias, _ in routes]) == pytest.approx(expected, abs=0.01)
    assert all(both for _, both in routes) == (mode != "champion")
    assert router.route(False) == ("champion", False)  # no challenger: the champion alone
