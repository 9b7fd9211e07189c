"""mlops-serve: the real server (uvicorn, a subprocess on a free port) over a small sample whose
registry holds a champion and a challenger; every route, a hot swap of the champion under load,
shadow logging, and the graph reading the log back."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from mlflow import MlflowClient

from mlops_assets.resources.tracking import tracking_uri
from mlops_assets.serving.predlog import read_log
from mlops_assets.settings import load_settings
from mlops_assets_tests.conftest import SMALL, check_results, edit_sources, read_table, run_graph

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("serving")]
KEY = "s3cret-test-key"
HEADERS = {"X-API-Key": KEY}
TRAININGS = ["customer_segmenter", "segmentation_report", "sales_forecaster", "forecast_backtest_report",
             "forecast_choices", "clv_validation_report"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """One keep-alive HTTP/1.1 connection to the server."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self, path: str, headers=HEADERS) -> tuple[int, dict]:
        self.conn.request("GET", path, headers=headers)
        r = self.conn.getresponse()
        return r.status, json.loads(r.read() or b"null")

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        self.conn.request(
            "POST", path, body=json.dumps(body), headers={**HEADERS, "content-type": "application/json"}
        )
        r = self.conn.getresponse()
        return r.status, json.loads(r.read() or b"null")


@pytest.fixture(scope="module")
def served(_small_template, tmp_path_factory):
    """A built sample with two versions of each model (champion v1, challenger v2), and
    mlops-serve on it in shadow mode with an API key."""
    data = tmp_path_factory.mktemp("serving") / "data"
    shutil.copytree(_small_template, data)
    # a 28-day CLV holdout: three months of history are enough to validate and register it
    edit_sources(data, lambda s: s.setdefault("features", {}).update(clv_horizon_days=28))
    with dg.instance_for_test() as instance:
        assert run_graph(data, SMALL["start"], SMALL["end"], instance=instance).success
        again = [dg.AssetKey(k) for k in TRAININGS]
        assert run_graph(data, SMALL["start"], SMALL["end"], instance=instance, selection=again).success
    client = MlflowClient(tracking_uri(load_settings(data)))
    for model in ("customer_segmenter", "sales_forecaster", "clv_model"):
        client.set_registered_model_alias(model, "champion", "1")
        client.set_registered_model_alias(model, "challenger", "2")
    proc, port, body = start_server(data, "--mode", "shadow", "--poll-seconds", "2")
    yield {"data": data, "port": port, "client": client, "ready": body}
    stop_server(proc)


def start_server(data: Path, *args: str) -> tuple[subprocess.Popen, int, dict]:
    """mlops-serve on a free port, with the API key; returns once /ready says 200."""
    port = free_port()
    env = {**os.environ, "MLOPS_SERVE_API_KEY": KEY, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    cmd = [os.path.join(os.path.dirname(sys.executable), "mlops-serve"), "--data-dir", str(data),
           "--port", str(port), *args]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while True:
        try:
            status, body = Client(port).get("/ready")
            if status == 200:
                return proc, port, body
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"mlops-serve did not get ready: {proc.stdout.read()}")
        time.sleep(0.3)


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown flushes the log
    proc.wait(timeout=30)


def test_every_route_answers_and_names_its_model_version(served):
    c, data = Client(served["port"]), served["data"]
    assert c.get("/health", headers={}) == (200, {"status": "ok"})  # /health needs no key
    ready = served["ready"]
    assert ready["models"]["customer_segmenter"] == {"champion": "1", "challenger": "2"}
    assert ready["models"]["clv_model"] == {"champion": "1", "challenger": "2"}
    assert ready["customers"] > 100 and ready["series"] > 3 and ready["mode"] == "shadow"

    features = read_table(data, "features.customer_features").set_index("customer_id")
    cid = features.index[0]
    status, body = c.get(f"/v1/customers/{cid}")
    assert status == 200 and body["customer_id"] == cid and body["served_by"] == "champion"
    assert body["features"]["monetary"] == pytest.approx(features.loc[cid, "monetary"])
    assert body["segment"]["model_version"] == "1" and body["clv_12m"]["model_version"] == "1"
    segments = read_table(data, "segmentation.customer_segments").set_index("customer_id")
    assert body["segment"]["segment_id"] == segments.loc[cid, "segment_id"]  # the champion's batch score
    assert body["clv_12m"]["value"] > 0

    # the same feature values posted: the same segment, from the same version
    posted = {f: body["features"][f] for f in ("recency_days", "frequency", "monetary")}
    status, scored = c.post("/v1/segments:score", {"instances": [{"customer_id": cid, **posted}]})
    assert status == 200 and scored["model_version"] == "1"
    assert scored["segments"][0]["segment_id"] == body["segment"]["segment_id"]

    forecasts = read_table(data, "forecasting.sales_forecasts")
    total = forecasts[forecasts["series_id"] == "total"].sort_values("step")
    status, fc = c.get("/v1/forecasts/total?horizon=3")
    assert status == 200 and fc["model"] == "sales_forecaster" and fc["model_version"] == "1"
    assert [r["mean"] for r in fc["forecasts"]] == pytest.approx(total["mean"].head(3).tolist())
    assert {"lower80", "upper80", "lower95", "upper95"} <= set(fc["forecasts"][0])
    status, fc = c.get("/v1/forecasts/store%3DS01")
    assert status == 200 and len(fc["forecasts"]) == 28  # no horizon: the trained one

    paths = c.get("/openapi.json")[1]["paths"]
    assert {"/v1/customers/{customer_id}", "/v1/segments:score", "/ready"} <= set(paths)


def test_bad_requests_get_422_naming_the_field_and_unknowns_404(served):
    c = Client(served["port"])
    status, body = c.post("/v1/segments:score", {"instances": [{"recency_days": "abc", "frequency": 1}]})
    assert status == 422
    locs = [e["loc"] for e in body["detail"]]
    assert ["body", "instances", 0, "recency_days"] in locs and ["body", "instances", 0, "monetary"] in locs
    status, body = c.get("/v1/forecasts/total?horizon=99")
    assert status == 422 and body["detail"][0]["loc"] == ["query", "horizon"]
    assert "28" in body["detail"][0]["msg"]
    assert c.get("/v1/forecasts/total?horizon=0")[0] == 422
    status, body = c.get("/v1/customers/NOBODY")
    assert status == 404 and "NOBODY" in body["detail"]
    assert c.get("/v1/forecasts/store=NOWHERE")[0] == 404
    assert c.get("/v1/customers/NOBODY", headers={})[0] == 401  # every route but /health needs the key
    assert c.get("/ready", headers={"X-API-Key": "wrong"})[0] == 401
    time.sleep(1.5)  # the log's batch
    rejected = _logged(served["data"], "total")
    rejected = rejected[rejected["status"] == 422]
    assert set(rejected["route"]) == {"forecast"} and rejected["error"].str.contains("horizon").all()


def _logged(data: Path, entity: str) -> pd.DataFrame:
    table, _ = read_log(load_settings(data).prediction_log_dir)
    return table[table["entity_id"] == entity]


def test_shadow_answers_are_logged_and_read_back_by_the_graph(served):
    c, data = Client(served["port"]), served["data"]
    ids = read_table(data, "features.customer_features")["customer_id"].tolist()
    for cid in ids[10:40]:
        assert c.get(f"/v1/customers/{cid}")[0] == 200
    for _ in range(3):
        assert c.get("/v1/forecasts/category=Books?horizon=5")[0] == 200
    deadline = time.time() + 10
    while len(_logged(data, ids[39])) < 1 and time.time() < deadline:
        time.sleep(0.2)  # the log is written in batches, every second
    logged = _logged(data, "category=Books")
    assert len(logged) == 3 and (logged["served_by"] == "champion").all()
    one = _logged(data, ids[20]).iloc[-1]
    assert one["status"] == 200 and one["route"] == "customer"
    champion, challenger = json.loads(one["champion_output"]), json.loads(one["challenger_output"])
    assert champion["segment"]["model_version"] == "1" and challenger["segment"]["model_version"] == "2"
    assert json.loads(one["versions"])["sales_forecaster"] == {"champion": "1", "challenger": "2"}

    keys = [dg.AssetKey(k) for k in ("served_predictions", "served_input_drift", "shadow_report")]
    with dg.instance_for_test() as instance:
        result = run_graph(data, SMALL["start"], SMALL["end"], instance=instance, selection=keys)
    assert result.success
    table = read_table(data, "serving.served_predictions")
    assert len(table) >= 33 and set(ids[10:40]) <= set(table["entity_id"])
    drift = result.asset_materializations_for_node("served_input_drift")[0].metadata
    assert drift["served_rows"].value >= 30 and drift["reference_version"].text == "1"
    assert read_table(data, "monitoring.served_input_drift")["column"].isin(["monetary", "frequency"]).any()
    assert "served_inputs_match_training" in check_results(result)
    report = read_table(data, "monitoring.shadow_report").set_index("model")
    seg = report.loc["customer_segmenter"]
    assert seg["challenger_version"] == "2" and seg["requests"] >= 30 and 0 <= seg["agreement"] <= 1
    forecasts = table[(table["route"] == "forecast") & (table["status"] == 200)]
    periods = sum(len(json.loads(o)["forecasts"]) for o in forecasts["champion_output"])
    assert report.loc["sales_forecaster", "compared"] == periods >= 15  # Books: 3 requests x 5 periods
    tags = served["client"].get_model_version("customer_segmenter", "2").tags
    assert float(tags["shadow.agreement"]) == pytest.approx(seg["agreement"])


def test_a_canary_share_of_requests_gets_the_challengers_answer_and_both_are_logged(served):
    data = served["data"]
    ids = read_table(data, "features.customer_features")["customer_id"].tolist()[:400]
    proc, port, _ = start_server(data, "--mode", "canary", "--canary-share", "0.3")
    try:
        client = Client(port)
        answers = [client.get(f"/v1/customers/{cid}")[1] for cid in ids]
        forecast = client.get("/v1/forecasts/total?horizon=2")[1]
    finally:
        stop_server(proc)  # and its log is flushed
    by = pd.Series([a["served_by"] for a in answers])
    assert 0.2 < (by == "challenger").mean() < 0.4  # 30% of 400 requests: 4 standard deviations
    versions = {a["served_by"]: a["segment"]["model_version"] for a in answers}
    assert versions == {"champion": "1", "challenger": "2"}
    assert forecast["model_version"] == {"champion": "1", "challenger": "2"}[forecast["served_by"]]
    logged = _logged(data, ids[0])
    logged = logged[logged["mode"] == "canary"]
    assert len(logged) == 1 and logged["champion_output"].notna().all()
    assert logged["challenger_output"].notna().all()  # both answers, whichever was returned


def test_a_new_champion_is_served_within_30_s_under_load_without_a_dropped_request(served):
    port, data = served["port"], served["data"]
    cid = read_table(data, "features.customer_features")["customer_id"].iloc[5]
    seen: list[tuple[float, float, int, str | None]] = []  # sent, answered, status, version
    stop = threading.Event()

    def hammer():
        c = Client(port)
        while not stop.is_set():
            sent = time.time()
            try:
                status, body = c.get(f"/v1/customers/{cid}")
                seen.append((sent, time.time(), status, (body or {}).get("segment", {}).get("model_version")))
            except OSError as exc:  # a refused or dropped connection is a failure to record
                seen.append((sent, time.time(), -1, repr(exc)))
                c = Client(port)

    workers = [threading.Thread(target=hammer) for _ in range(4)]
    for w in workers:
        w.start()
    time.sleep(1)
    client = served["client"]
    promoted_at = time.time()
    # the old champion becomes challenger first: a state with the new champion has both moves
    client.set_registered_model_alias("customer_segmenter", "challenger", "1")
    client.set_registered_model_alias("customer_segmenter", "champion", "2")
    deadline = promoted_at + 30
    while time.time() < deadline and not any(v == "2" for *_, v in seen[-20:]):
        time.sleep(0.2)
    time.sleep(1)
    stop.set()
    for w in workers:
        w.join()
    assert len(seen) > 100
    assert [s for s in seen if s[2] != 200] == []  # nothing dropped or failed during the swap
    assert {v for sent, *_, v in seen if sent < promoted_at} == {"1"}
    swapped = min((done for _, done, _, v in seen if v == "2"), default=None)
    assert swapped is not None and swapped - promoted_at <= 30
    after = [v for sent, *_, v in seen if sent > swapped]
    assert len(after) > 10 and set(after) == {"2"}  # once swapped, only the new champion answers
    status, ready = Client(port).get("/ready")
    assert ready["models"]["customer_segmenter"] == {"champion": "2", "challenger": "1"}


def test_the_challenger_is_promoted_on_its_shadow_reports_recommendation_only(served, tmp_path):
    from mlflow.exceptions import MlflowException

    from mlops_assets.assets.serving import _tag_challengers
    from mlops_assets.automation.jobs import promote_challenger_job
    from mlops_assets.core import serving_monitor as sm
    from mlops_assets.resources.registry import ModelRegistry
    from mlops_assets_tests.test_serving_log import accurate_challenger_log

    # a copy of the registry: the other tests' server keeps its champions whatever order they run in
    shutil.copytree(served["data"] / "mlflow", tmp_path / "mlflow")
    registry = ModelRegistry.of_data_dir(tmp_path, f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    client = registry.client
    for model in ("customer_segmenter", "sales_forecaster"):
        client.set_registered_model_alias(model, "champion", "1")
        client.set_registered_model_alias(model, "challenger", "2")
        for key in ("shadow.recommendation", "shadow.agreement"):
            with contextlib.suppress(MlflowException):  # absent before the shadow test's report
                client.delete_model_version_tag(model, "2", key)

    def promote(model: str) -> bool:
        outcome = promote_challenger_job.execute_in_process(
            run_config={"ops": {"promote_challenger": {"config": {"model_name": model}}}},
            resources={"registry": registry},
            instance=dg.DagsterInstance.ephemeral(),
        )
        assert outcome.success
        return outcome.output_for_node("promote_challenger")

    # a challenger never shadowed: kept, and the reason audited
    assert promote("customer_segmenter") is False
    assert str(registry.champion("customer_segmenter").version) == "1"
    last = registry.audit_log().iloc[-1]
    assert (last["event"], last["version"]) == ("rejection", "2") and "no shadow report" in last["reason"]

    # a shadow report over served forecasts whose actuals arrived, the challenger the accurate one
    log, actuals = accurate_challenger_log()
    report = sm.shadow_report(sm.shadow_pairs(log), actuals)
    report = report.assign(champion_version="1", challenger_version="2")  # this registry's versions
    _tag_challengers(registry, report[report["model"] == "sales_forecaster"])
    assert promote("sales_forecaster") is True
    champion = registry.champion("sales_forecaster")
    assert str(champion.version) == "2"
    assert champion.tags["decision_reason"].startswith("shadow report: promote")
