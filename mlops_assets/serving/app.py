"""The HTTP service (FastAPI): features, segments, CLV and forecasts from the registry's
champion, the challenger in shadow or as a canary, every answer in the prediction log.

    mlops-serve --host 127.0.0.1 --port 8000          # the console script (serving/cli.py)
    curl localhost:8000/v1/customers/C000256
"""

# no `from __future__ import annotations`: FastAPI reads the score route's body model, made at
# runtime from the configured features, from its real annotation
import os
import random
import time
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from hmac import compare_digest
from pathlib import Path

import pandas as pd
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, create_model

from mlops_assets.resources.registry import CHALLENGER, CHAMPION, ModelRegistry
from mlops_assets.resources.tracking import tracking_uri
from mlops_assets.serving.config import ServingSettings
from mlops_assets.serving.predlog import PredictionLog
from mlops_assets.serving.state import SEGMENTER, ServingState, StateHolder, encode
from mlops_assets.settings import Settings, load_settings

JSON = "application/json"
ROUTES = {"customer": "customer", "score_segments": "segments_score", "forecast": "forecast"}  # log names


class Router:
    """Which alias answers a request, and which others score it for the log."""

    def __init__(self, config: ServingSettings, seed: int | None = None):
        self.mode, self.share = config.mode, config.canary_share
        self._random = random.Random(seed)

    def route(self, has_challenger: bool) -> tuple[str, bool]:
        """(alias whose answer is returned, whether the challenger scores too)."""
        if not has_challenger or self.mode == "champion":
            return CHAMPION, False
        if self.mode == "canary" and self._random.random() < self.share:
            return CHALLENGER, True
        return CHAMPION, True


class ApiKeyGuard:
    """Pure ASGI middleware: every path but /health needs the key (X-API-Key header, or
    Authorization: Bearer). Compared in constant time."""

    def __init__(self, app, key: str):
        self.app, self.key = app, key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] != "/health":
            headers = dict(scope["headers"])
            given = headers.get(b"x-api-key") or headers.get(b"authorization", b"").removeprefix(b"Bearer ")
            if not compare_digest(given, self.key):
                body = b'{"detail":"missing or wrong API key: send it in the X-API-Key header"}'
                headers = [(b"content-type", JSON.encode()), (b"www-authenticate", b"ApiKey")]
                await send({"type": "http.response.start", "status": 401, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _score_models(features: list[str], max_instances: int) -> type[BaseModel]:
    """The request body of POST /v1/segments:score: the segmenter's features, each required
    (null allowed: imputed as in training), other keys ignored."""
    instance = create_model(
        "SegmentInstance",
        __config__=ConfigDict(extra="ignore"),
        customer_id=(str | None, None),
        **{f: (float | None, ...) for f in features},
    )
    return create_model(
        "SegmentScoreRequest",
        instances=(list[instance], Field(min_length=1, max_length=max_instances)),
    )


def create_app(
    data_dir: str | Path | None = None, config: ServingSettings | None = None, seed: int | None = None
) -> FastAPI:
    settings: Settings = load_settings(data_dir)
    config = config or settings.serving
    registry = ModelRegistry.of_data_dir(settings.data_dir, tracking_uri(settings))
    holder = StateHolder(settings.warehouse_path, registry, config.poll_seconds)
    log = PredictionLog(settings.prediction_log_dir, config.log_flush_seconds)
    router = Router(config, seed)
    features = list(settings.segment.features)
    ScoreRequest = _score_models(features, config.max_instances)  # noqa: N806  a class

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        holder.start()
        yield
        holder.stop()
        log.close()

    app = FastAPI(
        title="mlops_assets serving",
        version="1",
        description="Online features, segments, CLV and forecasts from the model registry's champion "
        f"(mode: {config.mode}). Every answer names the model version behind it.",
        lifespan=lifespan,
    )
    app.state.holder, app.state.log, app.state.config = holder, log, config
    key = os.environ.get(config.api_key_env, "")
    if key:
        app.add_middleware(ApiKeyGuard, key=key)

    def record(
        route, entity, status, served_by, started, state, inputs=None, outputs=(None, None), error=None
    ):
        log.append({
            "ts": _now(), "request_id": uuid.uuid4().hex, "route": route, "entity_id": entity,
            "status": status, "mode": config.mode, "served_by": served_by,
            "latency_ms": (time.perf_counter() - started) * 1000.0,
            "versions": state.versions if state is not None else None,
            "inputs": inputs, "champion_output": outputs[0], "challenger_output": outputs[1], "error": error,
        })  # fmt: skip

    def unavailable(route: str, entity, started) -> JSONResponse:
        detail = f"not ready: {holder.error or 'no model or features loaded yet'}"
        record(route, entity, 503, None, started, holder.state, error=detail)
        return JSONResponse({"detail": detail}, status_code=503)

    def invalid(route, entity, started, state, loc: list, msg: str, kind: str) -> JSONResponse:
        detail = [{"loc": loc, "msg": msg, "type": kind}]
        record(route, entity, 422, None, started, state, error=f"{'.'.join(map(str, loc))}: {msg}")
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in exc.errors()]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        entity = request.path_params.get("customer_id") or request.path_params.get("series_id")
        endpoint = getattr(request.scope.get("route"), "name", "")
        record(ROUTES.get(endpoint, request.url.path), entity, 422, None, time.perf_counter(), holder.state,
               error=f"{'.'.join(map(str, first['loc']))}: {first['msg']}")  # fmt: skip
        return JSONResponse({"detail": errors}, status_code=422)

    @app.get("/health", summary="Liveness: the process answers")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready", summary="Readiness: which model versions and features are loaded")
    async def ready() -> JSONResponse:
        state = holder.state
        body = {
            "ready": state is not None and _serves_something(state),
            "mode": config.mode,
            "canary_share": config.canary_share if config.mode == "canary" else None,
            "models": state.versions if state else None,
            "feature_as_of": state.feature_as_of if state else None,
            "customers": len(state.customers) if state else 0,
            "series": len(state.forecasts) if state else 0,
            "loaded_at": state.loaded_at if state else None,
            "swaps": holder.swaps,
            "notes": state.notes if state else [],
            "error": holder.error,
        }
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/v1/customers/{customer_id}", summary="Online features, segment and CLV of one customer")
    async def customer(customer_id: str) -> Response:
        started, state = time.perf_counter(), holder.state
        if state is None or not state.customers:
            return unavailable("customer", customer_id, started)
        found = state.customers.get(customer_id)
        if found is None:
            detail = f"customer {customer_id!r} is not in the online features (as of {state.feature_as_of})"
            record("customer", customer_id, 404, None, started, state, error=detail)
            return JSONResponse({"detail": detail}, status_code=404)
        alias, both = router.route(CHALLENGER in found.answers)
        body = found.answers[alias][0]
        outputs = (found.answers[CHAMPION][1], found.answers[CHALLENGER][1] if both else None)
        record("customer", customer_id, 200, alias, started, state, found.inputs, outputs)
        return Response(body, media_type=JSON)

    # the lookups are async (no thread hop: a dict access and a queue append); scoring posted
    # rows runs the scikit-learn pipeline, so it runs in the threadpool
    @app.post("/v1/segments:score", summary="Segments for posted feature values")
    def score_segments(request: ScoreRequest) -> Response:  # type: ignore[valid-type]
        started, state = time.perf_counter(), holder.state
        if state is None or CHAMPION not in state.segmenters:
            return unavailable("segments_score", None, started)
        rows = [i.model_dump() for i in request.instances]
        frame = pd.DataFrame(rows, columns=["customer_id", *features]).astype({f: float for f in features})
        champion_features = state.segmenters[CHAMPION][1].features
        missing = [f for f in champion_features if f not in features]
        if missing:
            return invalid("segments_score", None, started, state, ["body", "instances", 0, missing[0]],
                           f"the champion segmenter needs feature {missing[0]}", "missing")  # fmt: skip
        alias, both = router.route(CHALLENGER in state.segmenters)
        answers = {a: _assign(state, a, frame) for a in ([CHAMPION, CHALLENGER] if both else [CHAMPION])}
        record("segments_score", None, 200, alias, started, state, rows,
               (answers[CHAMPION], answers.get(CHALLENGER)))  # fmt: skip
        return Response(encode({**answers[alias], "served_by": alias}), media_type=JSON)

    @app.get("/v1/forecasts/{series_id:path}", summary="Champion forecasts of one series with 80/95% bands")
    async def forecast(series_id: str, horizon: int | None = Query(None, ge=1)) -> Response:
        started, state = time.perf_counter(), holder.state
        if state is None or not state.forecasts:
            return unavailable("forecast", series_id, started)
        found = state.forecasts.get(series_id)
        if found is None or CHAMPION not in found:
            detail = f"series {series_id!r} has no champion forecast (known: {_some(state.forecasts)})"
            record("forecast", series_id, 404, None, started, state, error=detail)
            return JSONResponse({"detail": detail}, status_code=404)
        longest = len(found[CHAMPION].rows)
        if horizon is not None and horizon > longest:
            return invalid("forecast", series_id, started, state, ["query", "horizon"],
                           f"Input should be less than or equal to {longest} (the horizon the champion "
                           "was trained for)", "less_than_equal")  # fmt: skip
        h = horizon or longest
        alias, both = router.route(CHALLENGER in found)
        answers = {
            a: _series(series_id, found[a], h) for a in ([CHAMPION, CHALLENGER] if both else [CHAMPION])
        }
        record("forecast", series_id, 200, alias, started, state, {"horizon": h},
               (answers[CHAMPION], answers.get(CHALLENGER)))  # fmt: skip
        return Response(encode({**answers[alias], "served_by": alias}), media_type=JSON)

    return app


def _serves_something(state: ServingState) -> bool:
    return bool(state.customers or state.forecasts or state.segmenters)


def _assign(state: ServingState, alias: str, frame: pd.DataFrame) -> dict:
    version, segmenter = state.segmenters[alias]
    scored = segmenter.assign(frame)
    return {
        "model": SEGMENTER,
        "model_version": version,
        "segments": [
            {"customer_id": c, "segment_id": int(i), "segment_name": str(n)}
            for c, i, n in zip(
                frame["customer_id"], scored["segment_id"], scored["segment_name"], strict=True
            )
        ],
    }


def _series(series_id: str, found, horizon: int) -> dict:
    return {
        "series_id": series_id,
        "model": found.model,
        "model_version": found.version,
        "horizon": horizon,
        "forecasts": found.rows[:horizon],
    }


def _some(known: dict, n: int = 5) -> str:
    names = sorted(known)
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")
