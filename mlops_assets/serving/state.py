"""What the service answers from: one immutable `ServingState` (the registry's champion and
challenger of each served model, every customer's answer under each, the forecasts by series),
built in a background thread and swapped in by one reference assignment, so a request sees
either the old state or the new one whole and none is dropped while a new champion loads.

A customer's answer is computed when the state is built (segment from the segmenter, CLV from
the CLV model, both over the latest online features), so a request is a dict lookup of bytes
already encoded: that is what keeps GET /v1/customers/{id} in microseconds under load.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_assets.core import engine, warehouse
from mlops_assets.core.clv import rfm_summary
from mlops_assets.core.feature_registry import ENTITY, group_version
from mlops_assets.resources.registry import CHALLENGER, CHAMPION, ModelRegistry

SEGMENTER, CLV = "customer_segmenter", "clv_model"
FORECASTERS = ("sales_forecaster", "catalog_forecaster")  # a series is served by the first that has it
MODELS = (SEGMENTER, CLV, *FORECASTERS)
ALIASES = (CHAMPION, CHALLENGER)
FEATURES = "features.customer_features"
SNAPSHOTS = "features.customer_feature_snapshots"
SILVER = "silver.silver_transactions"
BANDS = ("mean", "lower80", "upper80", "lower95", "upper95")


def _plain(value):
    """A JSON-ready Python value (numpy scalars and missing values made plain)."""
    if value is None or (isinstance(value, float | np.floating) and not np.isfinite(value)):
        return None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def encode(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), default=str).encode()


@dataclass(frozen=True)
class CustomerAnswer:
    inputs: dict  # the online features served
    answers: dict[str, tuple[bytes, dict]]  # alias -> (response body, what the log keeps)


@dataclass(frozen=True)
class SeriesForecasts:
    model: str
    version: str
    rows: list[dict]  # one per step: period, step, model, mean and the 80/95 bands


@dataclass
class ServingState:
    versions: dict[str, dict[str, str | None]]  # model -> alias -> version
    stamp: int  # the feature tables' warehouse stamp it was built from
    feature_as_of: str | None = None
    customers: dict[str, CustomerAnswer] = field(default_factory=dict)
    segmenters: dict[str, tuple[str, object]] = field(default_factory=dict)  # alias -> (version, obj)
    forecasts: dict[str, dict[str, SeriesForecasts]] = field(default_factory=dict)  # series -> alias -> ..
    notes: list[str] = field(default_factory=list)
    loaded_at: str = field(default_factory=lambda: pd.Timestamp.now(tz="UTC").isoformat())

    @property
    def key(self) -> tuple:
        return _key(self.versions, self.stamp)

    def version_of(self, model: str, alias: str) -> str | None:
        return self.versions.get(model, {}).get(alias)


def _key(versions: dict, stamp: int) -> tuple:
    return tuple(sorted((m, tuple(sorted(a.items()))) for m, a in versions.items())), stamp


def registry_versions(registry: ModelRegistry) -> dict[str, dict[str, str | None]]:
    """model -> alias -> version number, None where the alias is not set (or no such model).
    One registry query for every model: the poll stays light beside the requests it shares the
    process with."""
    aliases = {m.name: m.aliases or {} for m in registry.client.search_registered_models(max_results=1000)}
    out: dict[str, dict[str, str | None]] = {}
    for model in MODELS:
        found = aliases.get(model, {})
        out[model] = {a: str(found[a]) if a in found else None for a in ALIASES}
        # a challenger that is also the champion (the first version) is not a second model
        if out[model][CHALLENGER] == out[model][CHAMPION]:
            out[model][CHALLENGER] = None
    return out


class ModelCache:
    """Project objects by (model, version): a version's artifact is downloaded once."""

    def __init__(self, registry: ModelRegistry):
        self.registry = registry
        self._objects: dict[tuple[str, str], object] = {}

    def get(self, model: str, version: str):
        if (model, version) not in self._objects:
            self._objects[(model, version)] = self.registry.load(model, version=version)[0]
        return self._objects[(model, version)]


def build_state(database: Path, versions: dict, stamp: int, models: ModelCache) -> ServingState:
    state = ServingState(versions, stamp)
    _customers(state, database, models)
    _forecasts(state, models)
    return state


def _customers(state: ServingState, database: Path, models: ModelCache) -> None:
    features = warehouse.read_table(database, FEATURES)
    if features is None:
        state.notes.append(f"no {FEATURES} in the warehouse yet: customers are not served")
        return
    as_of = warehouse.read_table(database, SNAPSHOTS, "select max(feature_as_of) as as_of from {table}")
    as_of = None if as_of is None or as_of["as_of"].isna().all() else pd.Timestamp(as_of["as_of"].iloc[0])
    state.feature_as_of = as_of.isoformat() if as_of is not None else None
    key = ENTITY["customer"]
    ids = features[key].astype(str).tolist()
    inputs = features.drop(columns=[key]).astype(object).where(features.drop(columns=[key]).notna(), None)
    inputs = [{k: _plain(v) for k, v in row.items()} for row in inputs.to_dict("records")]
    summary = _Summary(database, as_of, state)
    scored = {
        a: (_segments(state, features, models, a), _clv(state, summary, ids, models, a)) for a in ALIASES
    }
    # a challenger answer takes the champion's part where only one of the two models has a
    # challenger; with neither, there is no challenger answer
    answers = {CHAMPION: scored[CHAMPION]}
    if any(part is not None for part in scored[CHALLENGER]):
        answers[CHALLENGER] = tuple(
            mine if mine is not None else theirs
            for mine, theirs in zip(scored[CHALLENGER], scored[CHAMPION], strict=True)
        )
    version = group_version("customer")
    for i, cid in enumerate(ids):
        per_alias = {}
        for alias, (seg, val) in answers.items():
            answer = {
                "segment": seg[i] if seg is not None else None,
                "clv_12m": val[i] if val is not None else None,
            }
            body = {
                "customer_id": cid,
                "feature_as_of": state.feature_as_of,
                "feature_version": version,
                "features": inputs[i],
                **answer,
                "served_by": alias,
            }
            per_alias[alias] = (encode(body), answer)
        state.customers[cid] = CustomerAnswer(inputs[i], per_alias)


def _segments(state, features, models: ModelCache, alias: str) -> list[dict] | None:
    version = state.version_of(SEGMENTER, alias)
    if version is None:
        return None
    segmenter = models.get(SEGMENTER, version)
    state.segmenters[alias] = (version, segmenter)
    scored = segmenter.assign(features)
    return [
        {"segment_id": int(i), "segment_name": str(n), "model": SEGMENTER, "model_version": version}
        for i, n in zip(scored["segment_id"], scored["segment_name"], strict=True)
    ]


class _Summary:
    """The customers' purchase summary as of the features' instant (the CLV models' input),
    read from silver once for both aliases."""

    def __init__(self, database: Path, as_of, state: ServingState):
        self.database, self.as_of, self.state, self._value = database, as_of, state, None

    def get(self) -> pd.DataFrame | None:
        if self._value is None and self.as_of is not None:
            with engine.connect(self.database) as con:  # summed per customer in the engine
                lines = engine.silver(con)
                if lines is None:
                    self.state.notes.append(f"no {SILVER} in the warehouse: CLV is not served")
                    self.as_of = None
                    return None
                self._value = rfm_summary(lines, self.as_of)
        return self._value


def _clv(state, summary: _Summary, ids: list[str], models: ModelCache, alias: str) -> list[dict] | None:
    version = state.version_of(CLV, alias)
    if version is None or summary.get() is None:
        return None
    values = models.get(CLV, version).predict(summary.get()).reindex(pd.Index(ids, name="customer_id"))
    return [{"value": _plain(v), "horizon_days": 365, "model": CLV, "model_version": version} for v in values]


def _forecasts(state: ServingState, models: ModelCache) -> None:
    for model in FORECASTERS:
        for alias in ALIASES:
            version = state.version_of(model, alias)
            if version is None:
                continue
            table = models.get(model, version).forecasts
            table = table.sort_values(["series_id", "step"], kind="stable")
            cols = ["period", "step", "model", *BANDS]
            for sid, rows in table.groupby("series_id", sort=False):
                mine = state.forecasts.setdefault(str(sid), {})
                owner = next(iter(mine.values())).model if mine else model
                if owner != model:  # the series is already served by an earlier forecaster
                    continue
                records = [
                    {k: _plain(v) for k, v in r.items()}
                    for r in rows[cols].assign(period=rows["period"].dt.date.astype(str)).to_dict("records")
                ]
                mine[alias] = SeriesForecasts(model, version, records)


class StateHolder:
    """The current state, and a thread that rebuilds it when an alias or the features change."""

    def __init__(self, database: Path, registry: ModelRegistry, poll_seconds: float):
        self.database = Path(database)
        self.registry = registry
        self.poll_seconds = poll_seconds
        self.models = ModelCache(registry)
        self.state: ServingState | None = None
        self.error: str | None = None
        self.swaps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="champion-watch", daemon=True)

    def refresh(self) -> bool:
        """Rebuild when the registry or the features moved; True when a new state went live.
        A failure (the warehouse locked by a writing run, a registry hiccup) keeps the state
        that is being served and is reported by /ready."""
        try:
            versions = registry_versions(self.registry)
            stamp = warehouse.stamp(self.database, [FEATURES]) if self.database.exists() else 0
            if self.state is not None and self.state.key == _key(versions, stamp):
                self.error = None
                return False
            started = time.perf_counter()
            state = build_state(self.database, versions, stamp, self.models)
            state.notes.append(f"built in {time.perf_counter() - started:.2f} s")
            self.state, self.error = state, None  # the swap: one reference assignment
            self.swaps += 1
            return True
        except Exception as exc:  # noqa: BLE001  reported, and retried at the next poll
            self.error = f"{type(exc).__name__}: {exc}"
            return False

    def start(self) -> None:
        self.refresh()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
