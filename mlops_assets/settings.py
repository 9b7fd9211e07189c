"""Typed settings: MLOPS_DATA_DIR and its sources.yaml, loaded once and validated.

Every error names the file and the key at fault, because this is what a user sees when
`dagster dev` or `dagster definitions validate` refuses to load the code location.
"""

from __future__ import annotations

import datetime as dt
import functools
import glob
import os
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlops_assets.core.schemas import CANONICAL, REQUIRED
from mlops_assets.core.warehouse import location
from mlops_assets.serving.config import ServingSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT / "data"


class SettingsError(ValueError):
    """sources.yaml (or MLOPS_DATA_DIR) is not usable; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Strict):
    path: str
    read: dict[str, Any] = Field(default_factory=dict)
    columns: dict[str, str] = Field(default_factory=dict)


class WindowSpec(_Strict):
    start_date: dt.date
    end_date: dt.date | None = None  # None: up to yesterday, growing daily


class ForecastSpec(_Strict):
    freq: Literal["D", "W"] = "D"
    # weekly periods end on this weekday; null: the weekday the feed stamps its lines on (weekly
    # totals dated by their week's last day), else Sunday (ISO weeks, Monday..Sunday)
    week_ends: Literal["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"] | None = None
    horizon: int = Field(28, ge=1)
    # total / store / category are forecast one series at a time with the candidates below;
    # product and product_store turn on the catalog path (assets/catalog.py): every level down
    # to each product in each store, backtested in chunks, reconciled so that it is coherent
    levels: list[Literal["total", "store", "category", "product", "product_store"]] = [
        "total",
        "store",
        "category",
    ]
    # catalog path: series per Dagster step of its backtest (at least one step per worker), and
    # the share of periods without sales above which a series gets intermittent-demand models
    chunk_series: int = Field(3000, ge=50)
    intermittent_share: float = Field(0.3, ge=0, le=1)
    # catalog path: a global LightGBM model of each product-store day's median beside the
    # reconciled mean, the point forecast of the demand classes where it wins a selection fold
    median_model: bool = True
    # candidates besides the seasonal naive baseline, which always runs (the defaults are the set
    # that held out of sample on the real-data benchmark, bench/bench_realdata.py)
    candidates: list[
        Literal["seasonal_naive", "ets", "theta", "ces", "seasonal_ar", "mstl", "arima", "prophet"]
    ] = ["ets", "theta", "ces", "seasonal_ar"]
    # rolling-origin folds of one horizon each: the last is the holdout that reports and gates
    # accuracy and coverage; the others choose and calibrate the intervals
    folds: int = Field(4, ge=3)
    ensemble_size: int = Field(4, ge=0)  # best candidates averaged into the ensemble (0/1: none)
    # combination: ship the ensemble (equal weights); best: the lowest selection-fold MASE per series
    choice: Literal["combination", "best"] = "combination"
    country: str = "US"  # holiday calendar (python-holidays country code)
    # daily candidates learn each public holiday's effect on the days (before, after) it from
    # past years, and the year-ago profile of the season (core/holiday_effects.py); null: off
    holiday_window: tuple[int, int] | None = (-1, 4)
    workers: int = Field(2, ge=1)  # processes the series fan out over
    # the models fit on at most this many days before the forecast origin (null: the whole
    # window): three yearly cycles carry the seasonality, and older history costs time (a
    # ten-year daily window fit 6x slower) for little accuracy
    history_days: int | None = Field(1096, ge=365)
    # gate: median over series of the holdout fold's (chosen MASE / seasonal naive MASE)
    max_relative_mase: float = 1.0
    # gate: holdout coverage of the 80% / 95% bands, mean over series, within this of nominal;
    # under-covering bands block, over-wide bands only warn
    coverage_tolerance: float = 0.10

    @field_validator("holiday_window")
    @classmethod
    def _window_spans_the_holiday(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and not (-14 <= v[0] <= 0 <= v[1] <= 14):
            raise ValueError(
                f"holiday_window {list(v)} must be [days before, days after] around the holiday, "
                "the first from -14 to 0 and the second from 0 to 14 (e.g. [-1, 4])"
            )
        return v

    @property
    def top_levels(self) -> list[str]:
        """The levels the per-series path forecasts (the total when only catalog levels are asked)."""
        return [lv for lv in self.levels if lv in ("total", "store", "category")] or ["total"]

    @property
    def catalog(self) -> bool:
        return any(lv in ("product", "product_store") for lv in self.levels)


class QualitySettings(_Strict):
    # above this share of quarantined lines the upstream is corrupt, not just dirty: block
    max_quarantine_share: float = 0.05
    # a column whose non-null values mostly fail to parse is a schema break, not bad rows
    max_unparseable_share: float = 0.01
    # null-rate ceilings per canonical column; guests make customer_id legitimately sparse
    max_null_rate: dict[str, float] = Field(default_factory=lambda: {"customer_id": 0.6, "default": 0.02})
    # |quantity| above this is a typo (UCI's 80,995 paper birds), not an order
    max_abs_quantity: float = 1_000
    # unit price more than this factor off the product's reference price is an outlier
    price_outlier_factor: float = 10.0
    # gate: above this share of negative-quantity lines (returns) in a run the signs look
    # flipped (sales written negative), not a season of returns: block
    max_return_share: float = Field(0.3, gt=0, le=1)
    # gate (warns): a day with fewer lines than this share of the median of the same weekday
    # over the eight weeks before it looks partly missing (a file cut short, a store not sent)
    min_day_volume_ratio: float = Field(0.2, ge=0, lt=1)
    # ...judged only where that weekday usually has at least this many lines (small feeds are
    # bursty: a real bike wholesaler's 12-line Tuesdays are often 0-line ones)
    min_day_volume_usual: float = Field(30, ge=0)
    # rule: a line equal to one of an earlier day but for its timestamp (order id, customer,
    # product, store, quantity, price; in the run or published before it) is the same line
    # re-sent under another date (replayed_order); false turns it off
    detect_replays: bool = True
    # rule (off unless set): a return whose customer bought that product in none of this many
    # days before it is a sale written negative (return_without_sale). For feeds whose returns
    # carry no marker; off by default: the shipped sample has 716 returns of 5,531 without one
    return_lookback_days: int | None = Field(None, ge=1)

    def null_ceiling(self, column: str) -> float:
        return self.max_null_rate.get(column, self.max_null_rate.get("default", 0.02))


class FeatureSettings(_Strict):
    # the offline store keeps one snapshot per period (a pandas frequency; W-MON = Mondays)
    snapshot_freq: str = "W-MON"
    # processes that compute snapshots (only the instants whose inputs changed are computed)
    workers: int = Field(2, ge=1)
    # customer lifetime value looks this many days ahead, and is validated on as long a holdout
    clv_horizon_days: int = 365
    # null-share ceilings per feature name, overriding the registry's expected share
    max_null_share: dict[str, float] = Field(default_factory=dict)

    @field_validator("snapshot_freq")
    @classmethod
    def _known_frequency(cls, value: str) -> str:
        try:
            pd.tseries.frequencies.to_offset(value)
        except ValueError as exc:
            raise ValueError(f"not a pandas frequency: {value!r}") from exc
        return value


class SegmentSettings(_Strict):
    # customer features the segmenter clusters on (RFM by default; any numeric feature works)
    features: list[str] = ["recency_days", "frequency", "monetary"]
    # k range; two segments (active / lapsed) are not actionable, more than 8 are not read
    k_min: int = Field(3, ge=2)
    k_max: int = Field(8, ge=2)
    # the largest k whose silhouette is within this of the best k's is chosen (silhouette alone
    # picks the coarsest split of skewed RFM data)
    silhouette_tolerance: float = Field(0.05, ge=0)
    algorithms: list[Literal["kmeans", "dbscan"]] = ["kmeans", "dbscan"]
    n_init: int = Field(4, ge=1)  # k-means restarts of the chosen k (the sweep: one start per k)
    # above this many customers, the sweep, DBSCAN and the bootstrap use a random sample
    sample_size: int = Field(10_000, ge=100)
    silhouette_sample: int = Field(2_000, ge=100)  # points the silhouette is computed over
    resamples: int = Field(10, ge=2)  # bootstrap refits for the stability ARI
    # DBSCAN leaving more customers as noise than this is not a segmentation of them
    max_noise_share: float = 0.2
    # gates: the usual "reasonable structure" floor, a segment worth a campaign, reproducibility
    min_silhouette: float = 0.25
    min_segment_share: float = 0.02
    min_stability_ari: float = 0.8
    seed: int = 0

    @model_validator(mode="after")
    def _k_range(self) -> SegmentSettings:
        if self.k_max < self.k_min:
            raise ValueError(f"k_max ({self.k_max}) is below k_min ({self.k_min})")
        return self


class AnomalySettings(_Strict):
    # a period is an anomaly when its robust residual z is at least this (ordinary noise stays
    # quiet: 3.5 robust SDs, the Iglewicz-Hoaglin cut-off)...
    min_abs_z: float = Field(3.5, gt=0)
    # ...and its revenue is at least this far from expected in log terms (0.3: +35% / -26%)
    min_log_deviation: float = Field(0.3, ge=0)
    # periods of the rolling median that follows the level (a decaying cohort, a random walk)
    level_window: int = Field(15, ge=3)
    # periods of the rolling MAD that measures the local noise
    noise_window: int = Field(91, ge=7)
    # days around each public holiday that get their own effect (Thanksgiving +1 is Black Friday)
    holiday_window: tuple[int, int] = (-1, 4)
    seed: int = 0


class RegistrySettings(_Strict):
    # a forecaster is promoted when a one-sided Diebold-Mariano test finds it better at this level
    alpha: float = Field(0.05, gt=0, lt=1)
    # a segmenter may trail the champion's silhouette and stability by at most this much
    segment_tolerance: float = Field(0.02, ge=0)


class MonitoringSettings(_Strict):
    # drift: Evidently's defaults, so a user can cross-check against its reports
    small_sample: int = Field(1000, ge=1)  # reference rows up to which KS / chi-square are used
    ks_p_value: float = Field(0.05, gt=0, lt=1)
    wasserstein_threshold: float = Field(0.1, gt=0)  # Wasserstein distance / reference std
    chi2_p_value: float = Field(0.05, gt=0, lt=1)
    jensen_shannon_threshold: float = Field(0.1, gt=0)
    psi_bins: int = Field(10, ge=2)
    # PSI: 0.1 a moderate shift worth a look, 0.2 a significant one worth a retrain (industry rule)
    psi_moderate: float = Field(0.1, gt=0)
    psi_significant: float = Field(0.2, gt=0)
    drift_share: float = Field(0.5, gt=0, le=1)  # drifted share of a dataset's columns: dataset drift
    # a domain classifier's cross-validated AUC per dataset, shown beside the column tests
    # (informational: a week-older snapshot of the same customers is already told apart a little)
    classifier_drift: bool = True
    classifier_auc_threshold: float = Field(0.55, gt=0.5, le=1)
    # the current window of transaction lines compared with the champion's training window
    window_days: int = Field(28, ge=1)
    # forecast performance: periods of arrived actuals scored, and the MASE degradation tolerated
    performance_window: int = Field(28, ge=1)
    max_mase_degradation: float = Field(0.2, ge=0)  # 0.2: rolling MASE 20% worse than backtest
    # a model older than this is stale and retrained (and its freshness policy fails)
    model_max_age_days: float = Field(7, gt=0)
    # source-facing assets not refreshed for this long are stale in the UI
    source_max_age_hours: float = Field(48, gt=0)

    @model_validator(mode="after")
    def _psi_order(self) -> MonitoringSettings:
        if self.psi_significant < self.psi_moderate:
            raise ValueError(
                f"psi_significant ({self.psi_significant}) is below psi_moderate ({self.psi_moderate})"
            )
        return self


class Settings(_Strict):
    data_dir: Path
    sources_file: Path
    transactions: SourceSpec
    products: SourceSpec | None = None
    inventory: SourceSpec | None = None
    window: WindowSpec
    forecast: ForecastSpec = ForecastSpec()
    quality: QualitySettings = QualitySettings()
    features: FeatureSettings = FeatureSettings()
    segment: SegmentSettings = SegmentSettings()
    anomaly: AnomalySettings = AnomalySettings()
    registry: RegistrySettings = RegistrySettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    serving: ServingSettings = ServingSettings()  # mlops-serve (mlops_assets/serving)
    # how a run executes its steps: in_process (default) runs them one after another in the run's
    # process, which suits data one machine holds (each step process of multiprocess first imports
    # the whole stack, about 9 s); multiprocess runs independent steps in parallel processes;
    # celery sends each step to the Celery workers of the production profile (deploy/cluster,
    # broker and result backend from MLOPS_CELERY_BROKER / MLOPS_CELERY_BACKEND). MLOPS_EXECUTOR
    # in the environment overrides this (the profile sets it for its daemon and webserver)
    executor: Literal["in_process", "multiprocess", "celery"] = "in_process"
    # the warehouse's format: duckdb (default; warehouse.duckdb, one writer and no reader while a
    # run writes) or delta (the folder warehouse/ of Delta tables, readable while runs write; the
    # production profile's). MLOPS_WAREHOUSE in the environment overrides it
    warehouse: Literal["duckdb", "delta"] = "duckdb"

    @property
    def warehouse_path(self) -> Path:
        """The DuckDB file or the Delta folder (core/warehouse.connect reads either)."""
        return location(self.data_dir, self.warehouse)

    @property
    def issued_forecasts_dir(self) -> Path:
        """Forecasts as issued by each champion (Parquet), scored as actuals arrive."""
        return self.data_dir / "forecasts" / "issued"

    @property
    def catalog_issued_dir(self) -> Path:
        """The catalog forecaster's champions' forecasts as issued (catalog_forecasts)."""
        return self.data_dir / "forecasts" / "catalog_issued"

    @property
    def prediction_log_dir(self) -> Path:
        """What mlops-serve answered: JSON lines, read back by the served_predictions asset."""
        return self.data_dir / "serving" / "predictions"

    @property
    def catalog_steps_dir(self) -> Path:
        """The catalog backtest's step outputs (hierarchy, chunks), passed between processes."""
        return self.data_dir / "catalog"

    def source(self, name: str) -> SourceSpec | None:
        return getattr(self, name)

    def files(self, name: str) -> list[Path]:
        spec = self.source(name)
        return [] if spec is None else resolve_files(self.data_dir, spec.path)


def resolve_files(data_dir: Path, pattern: str) -> list[Path]:
    full = pattern if os.path.isabs(pattern) else str(data_dir / pattern)
    return sorted(Path(p) for p in glob.glob(full, recursive=True) if Path(p).is_file())


def data_dir_from_env() -> Path:
    return Path(os.environ.get("MLOPS_DATA_DIR", DEFAULT_DATA_DIR)).resolve()


EXECUTOR_ENV = "MLOPS_EXECUTOR"
WAREHOUSE_ENV = "MLOPS_WAREHOUSE"
ENV_OVERRIDES = {EXECUTOR_ENV: "executor", WAREHOUSE_ENV: "warehouse"}  # environment -> setting


def load_settings(data_dir: str | Path | None = None) -> Settings:
    """Read and validate `<data_dir>/sources.yaml` (data_dir defaults to MLOPS_DATA_DIR); read
    once per version of the file (an edited sources.yaml is read again)."""
    data_dir = Path(data_dir).resolve() if data_dir else data_dir_from_env()
    try:
        stat = (data_dir / "sources.yaml").stat()
        version = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        version = None
    overrides = tuple((key, os.environ[env]) for env, key in ENV_OVERRIDES.items() if os.environ.get(env))
    return _load(data_dir, version, overrides)


@functools.cache
def _load(data_dir: Path, version: tuple[int, int] | None, overrides: tuple = ()) -> Settings:
    sources_file = data_dir / "sources.yaml"
    if not sources_file.is_file():
        raise SettingsError(
            f"{sources_file}: file not found (set MLOPS_DATA_DIR to a folder with a sources.yaml)"
        )
    try:
        raw = yaml.safe_load(sources_file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SettingsError(f"{sources_file}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SettingsError(f"{sources_file}: expected a mapping of sources at the top level")
    if "transactions" not in raw:
        raise SettingsError(f"{sources_file}: transactions: required source is missing")
    raw = {**raw, **dict(overrides)}
    try:
        settings = Settings(data_dir=data_dir, sources_file=sources_file, **raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise SettingsError(f"{sources_file}: {key}: {first['msg']}") from exc
    for name in CANONICAL:
        spec = settings.source(name)
        if spec is not None:
            _check_source(settings, name, spec)
    return settings


def _check_source(settings: Settings, name: str, spec: SourceSpec) -> None:
    where = f"{settings.sources_file}: {name}"
    unknown = sorted(set(spec.columns) - set(CANONICAL[name]))
    if unknown:
        raise SettingsError(
            f"{where}.columns.{unknown[0]}: unknown canonical name '{unknown[0]}' "
            f"(expected one of: {', '.join(CANONICAL[name])})"
        )
    for required in REQUIRED[name]:
        options = required.split("|")
        if not any(opt in spec.columns for opt in options):
            raise SettingsError(
                f"{where}.columns: missing required mapping for " + " or ".join(f"'{o}'" for o in options)
            )
    if not settings.files(name):
        raise SettingsError(f"{where}.path: no file matches '{spec.path}' (looked in {settings.data_dir})")
