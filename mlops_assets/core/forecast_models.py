"""Forecasting candidates behind one small interface: fit on a series, forecast h periods with
80% and 95% intervals and the model's own predictive scale per step (which conformal
calibration rescales, core/conformal.py). Seasonal naive is the baseline; automatic ETS, Theta,
complex exponential smoothing and MSTL come from statsforecast, regression with ARIMA errors
from statsmodels, Prophet from prophet."""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlops_assets.core.series import SEASON, calendar_features, fourier_terms

Z = {80: 1.2815515655446004, 95: 1.959963984540054}
ORIGIN = pd.Timestamp("2000-01-03")  # a Monday: Fourier terms are measured from it


@dataclass
class Forecast:
    index: pd.DatetimeIndex
    mean: np.ndarray
    lower80: np.ndarray
    upper80: np.ndarray
    lower95: np.ndarray
    upper95: np.ndarray
    # the model's predictive standard deviation per step, kept unclipped: what conformal
    # calibration scales (None: a forecast stored before it existed)
    scale: np.ndarray | None = None

    def __post_init__(self):
        if self.scale is None:  # a Gaussian-equivalent scale from the model's own 80% band
            self.scale = (np.asarray(self.upper80, dtype=float) - np.asarray(self.lower80, dtype=float)) / (
                2 * Z[80]
            )

    def non_negative(self) -> Forecast:
        """Revenue cannot go below zero: clip the point and every bound at 0."""
        clip = {k: np.maximum(np.asarray(getattr(self, k), dtype=float), 0.0) for k in self.bands()}
        return Forecast(self.index, **clip, scale=self.scale)

    @staticmethod
    def bands() -> tuple[str, ...]:
        return ("mean", "lower80", "upper80", "lower95", "upper95")

    @classmethod
    def average(cls, forecasts: list[Forecast]) -> Forecast:
        """Mean of the members' points and bounds (a simple, documented approximation of the
        ensemble's intervals)."""
        return cls(
            forecasts[0].index,
            **{k: np.mean([getattr(f, k) for f in forecasts], axis=0) for k in (*cls.bands(), "scale")},
        )

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({"period": self.index, **{k: getattr(self, k) for k in self.bands()}})


def future_index(last: pd.Timestamp, h: int, freq: str) -> pd.DatetimeIndex:
    step = pd.Timedelta(days=1) if freq == "D" else pd.Timedelta(weeks=1)
    return pd.DatetimeIndex([last + step * (i + 1) for i in range(h)])


def _gaussian(index, mean, sd) -> Forecast:
    return Forecast(
        index,
        mean,
        mean - Z[80] * sd,
        mean + Z[80] * sd,
        mean - Z[95] * sd,
        mean + Z[95] * sd,
        scale=np.asarray(sd, dtype=float),
    )


class Model:
    """Fit on a series with a DatetimeIndex, then forecast. `prepare` runs once per series
    on the first backtest fold's training data (e.g. ARIMA's order search) before any fit."""

    name = "model"

    def __init__(self, freq: str = "D", country: str = "US"):
        self.freq, self.country, self.m = freq, country, SEASON[freq]

    def prepare(self, y: pd.Series) -> None:
        return None

    def fit(self, y: pd.Series) -> Model:
        raise NotImplementedError

    def predict(self, h: int) -> Forecast:
        raise NotImplementedError

    def fresh(self) -> Model:
        """An unfitted copy that keeps what `prepare` chose."""
        return copy.copy(self)

    def describe(self) -> str:
        return self.name


class SeasonalNaive(Model):
    """y(t + h) = y(t + h - m); intervals from the seasonal differences (fpp3 section 5.5)."""

    name = "seasonal_naive"

    def fit(self, y: pd.Series) -> SeasonalNaive:
        self.y, self.last = y.to_numpy(dtype=float), y.index[-1]
        m = self.m if len(self.y) > self.m else 1
        errors = self.y[m:] - self.y[:-m]
        self.season = m
        self.sigma = float(np.sqrt(np.mean(errors**2))) if len(errors) else 0.0
        return self

    def predict(self, h: int) -> Forecast:
        m = self.season
        mean = np.tile(self.y[-m:], int(np.ceil(h / m)))[:h]
        sd = self.sigma * np.sqrt(np.arange(h) // m + 1)
        return _gaussian(future_index(self.last, h, self.freq), mean, sd)


class StatsForecastModel(Model):
    """A statsforecast model (fit on the values, predict with levels 80 and 95). The period
    index is kept here; statsforecast sees only the array."""

    def estimator(self, n: int):
        raise NotImplementedError

    def fit(self, y: pd.Series) -> StatsForecastModel:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = self.estimator(len(y)).fit(y.to_numpy(dtype=float))
        self.last = y.index[-1]
        return self

    def predict(self, h: int) -> Forecast:
        out = self.model.predict(h=h, level=[80, 95])
        return Forecast(
            future_index(self.last, h, self.freq),
            np.asarray(out["mean"], dtype=float),
            np.asarray(out["lo-80"], dtype=float),
            np.asarray(out["hi-80"], dtype=float),
            np.asarray(out["lo-95"], dtype=float),
            np.asarray(out["hi-95"], dtype=float),
        )

    def seasonal(self, n: int) -> int:
        """The season length when the history holds two full seasons, else 1 (no season)."""
        return self.m if n >= 2 * self.m + 2 else 1


class AutoEts(StatsForecastModel):
    """Exponential smoothing with additive errors, trend (damped or not) and season chosen by
    AICc (statsforecast AutoETS; seasons longer than 24 periods are left to Theta and the
    seasonal AR). Additive errors only: a third of the time of the full search, for the same
    out-of-sample accuracy on the real-data benchmark (0.804 against 0.802). The form is chosen
    once per series, on the first backtest fold's history (`prepare`, as ARIMA's order), and
    every fold and the final fit estimate that form: one fit instead of six per fold."""

    name = "ets"
    spec = "AZZ"  # error, trend, season: Z = chosen by AICc
    form: tuple[str, bool | None] | None = None  # (model, damped) chosen by prepare

    def prepare(self, y: pd.Series) -> None:
        from statsforecast.models import AutoETS

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            chosen = AutoETS(season_length=self.seasonal(len(y)), model=self.spec).fit(
                y.to_numpy(dtype=float)
            )
        self.form = ets_form(str(chosen.model_["method"]))

    def estimator(self, n: int):
        from statsforecast.models import AutoETS

        if self.form is None:
            return AutoETS(season_length=self.seasonal(n), model=self.spec)
        model, damped = self.form
        season = self.seasonal(n) if model[2] != "N" else 1
        return AutoETS(season_length=season, model=model, damped=damped)

    def describe(self) -> str:
        return str(self.model.model_["method"]) if hasattr(self, "model") else self.name


def ets_form(method: str) -> tuple[str, bool]:
    """statsforecast's "ETS(A,Ad,N)" as AutoETS arguments: model "AAN", damped True."""
    error, trend, season = method[method.index("(") + 1 : method.index(")")].split(",")
    return error + trend[0] + season, trend.endswith("d")


class AutoThetaModel(StatsForecastModel):
    """The dynamic optimised Theta method (Fiorucci et al. 2016, which nests the standard and
    optimised ones) on the seasonally adjusted series (statsforecast AutoTheta, model DOTM).
    Choosing among the four Theta variants by in-sample MSE took four times as long and held up
    no better out of sample (real-data benchmark, three origins: 0.750 against 0.743)."""

    name = "theta"
    variant = "DOTM"

    def estimator(self, n: int):
        from statsforecast.models import AutoTheta

        return AutoTheta(season_length=self.seasonal(n), model=self.variant)


class AutoCesModel(StatsForecastModel):
    """Complex exponential smoothing, model chosen by AICc (statsforecast AutoCES). Its own
    intervals are simulated (5,000 paths, 40% of a whole series' backtest); the bands are
    conformal anyway, so its scale is the one-step standard deviation, flat over the horizon."""

    name = "ces"

    def estimator(self, n: int):
        from statsforecast.models import AutoCES

        return AutoCES(season_length=self.seasonal(n))

    def predict(self, h: int) -> Forecast:
        mean = np.asarray(self.model.predict(h=h)["mean"], dtype=float)
        sd = np.full(h, float(np.sqrt(self.model.model_["sigma2"])))
        return _gaussian(future_index(self.last, h, self.freq), mean, sd)


class SeasonalAr(StatsForecastModel):
    """The seasonal naive forecast corrected by what the year-on-year (week-on-week for daily
    data) differences are doing now: ARIMA(1,0,0)(0,1,0)m with drift (statsforecast ARIMA).
    Needs one season of history plus a few periods, where seasonal ETS needs two."""

    name = "seasonal_ar"

    def estimator(self, n: int):
        from statsforecast.models import ARIMA

        if n < self.m + 10:
            raise ValueError(f"{n} periods: one season of {self.m} and 10 more are needed")
        return ARIMA(order=(1, 0, 0), seasonal_order=(0, 1, 0), season_length=self.m, include_constant=True)


class MstlModel(StatsForecastModel):
    """Multiple seasonal-trend decomposition by Loess: weekly and yearly seasons of daily data
    (each one the history holds twice), the trend forecast by automatic non-seasonal ETS."""

    name = "mstl"

    def estimator(self, n: int):
        from statsforecast.models import MSTL, AutoETS

        seasons = [s for s in ((7, 365) if self.freq == "D" else (52,)) if n >= 2 * s + 2]
        if not seasons:
            raise ValueError(f"{n} periods hold no season twice: nothing for MSTL to decompose")
        return MSTL(season_length=seasons, trend_forecaster=AutoETS(model="ZZN"))


class Arima(Model):
    """Regression on a linear trend, Fourier seasonality (weekly for daily data, yearly) and
    holiday counts, with ARIMA errors (dynamic harmonic regression, estimated in two steps:
    least squares, then ARIMA on the residuals, which keeps the AIC grid fast). The order is
    searched by AIC over p 0-2, d 0-1, q 0-2 on the first fold's history, where each fold refits
    that order, and again on the whole history for the shipped forecast."""

    name = "arima"
    order: tuple[int, int, int] | None = None

    def _design(self, index: pd.DatetimeIndex) -> np.ndarray:
        t = (index - ORIGIN).days.to_numpy(dtype=float) / 365.25
        blocks = [np.ones((len(index), 1)), t[:, None], fourier_terms(index, 365.25, 3, ORIGIN)]
        if self.freq == "D":
            blocks.append(fourier_terms(index, 7.0, 3, ORIGIN))
        blocks.append(calendar_features(index, self.freq, self.country)[["holidays"]].to_numpy(dtype=float))
        return np.column_stack(blocks)

    def _residuals(self, y: pd.Series) -> np.ndarray:
        X = self._design(y.index)
        self.beta = np.linalg.lstsq(X, y.to_numpy(dtype=float), rcond=None)[0]
        return y.to_numpy(dtype=float) - X @ self.beta

    @staticmethod
    def _fit_errors(resid: np.ndarray, order: tuple[int, int, int]):
        from statsmodels.tsa.arima.model import ARIMA

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ARIMA(resid, order=order, trend="n").fit()

    def prepare(self, y: pd.Series) -> None:
        """AIC over the whole grid p 0-2, d 0-1, q 0-2. The AICs compare like with like: the
        d = 1 models see the n - 1 differences, the d = 0 models the last n - 1 values, and
        differencing given the first value has a unit Jacobian, so both likelihoods are
        densities of the same n - 1 observations."""
        resid = self._residuals(y)
        best, self.aic_table = None, {}
        for d in range(2):
            data = resid if d else resid[1:]
            for p in range(3):
                for q in range(3):
                    try:
                        aic = float(self._fit_errors(data, (p, d, q)).aic)
                    except Exception:  # a non-invertible or non-convergent corner of the grid
                        continue
                    self.aic_table[(p, d, q)] = aic
                    if np.isfinite(aic) and (best is None or aic < self.aic_table[best]):
                        best = (p, d, q)
        if best is None:
            raise ValueError("no ARIMA order in the grid could be fitted")
        self.order = best

    def fit(self, y: pd.Series) -> Arima:
        if self.order is None:
            self.prepare(y)
        self.result, self.last = self._fit_errors(self._residuals(y), self.order), y.index[-1]
        return self

    def predict(self, h: int) -> Forecast:
        index = future_index(self.last, h, self.freq)
        fc = self.result.get_forecast(h)
        base = self._design(index) @ self.beta
        c80, c95 = fc.conf_int(alpha=0.2), fc.conf_int(alpha=0.05)
        return Forecast(index, base + fc.predicted_mean, base + c80[:, 0], base + c80[:, 1],
                        base + c95[:, 0], base + c95[:, 1])  # fmt: skip

    def describe(self) -> str:
        return f"regression + arima{self.order} errors"


class ProphetModel(Model):
    """Prophet with country holidays; 80% and 95% bounds from one set of predictive samples."""

    name = "prophet"
    samples = 1000
    seed = 0

    def fit(self, y: pd.Series) -> ProphetModel:
        from prophet import Prophet

        for name in ("cmdstanpy", "prophet"):
            logging.getLogger(name).setLevel(logging.WARNING)
        model = Prophet(
            weekly_seasonality=self.freq == "D",
            yearly_seasonality=len(y) * (1 if self.freq == "D" else 7) >= 365,
            daily_seasonality=False,
            uncertainty_samples=self.samples,
        )
        if self.freq == "D":
            model.add_country_holidays(country_name=self.country)
        model.fit(pd.DataFrame({"ds": y.index, "y": y.to_numpy(dtype=float)}))
        self.model, self.last = model, y.index[-1]
        return self

    def predict(self, h: int) -> Forecast:
        index = future_index(self.last, h, self.freq)
        future = pd.DataFrame({"ds": index})
        self.model.uncertainty_samples = 0  # the point forecast needs no sampling
        mean = self.model.predict(future)["yhat"].to_numpy()
        self.model.uncertainty_samples = self.samples
        state = np.random.get_state()  # Prophet samples from numpy's global generator
        np.random.seed(self.seed)
        try:
            draws = self.model.predictive_samples(future)["yhat"]
        finally:
            np.random.set_state(state)
        q = np.quantile(draws - mean[:, None], [0.1, 0.9, 0.025, 0.975], axis=1)
        # uncertainty of a trend-plus-noise model cannot shrink with the horizon: a sampled
        # quantile that dips below an earlier one is Monte-Carlo noise, so carry the maximum
        spread = np.maximum.accumulate(np.abs(q), axis=1)
        return Forecast(index, mean, mean - spread[0], mean + spread[1], mean - spread[2], mean + spread[3])

    def __getstate__(self):
        from prophet.serialize import model_to_json

        state = dict(self.__dict__)
        if "model" in state:
            state["model"] = model_to_json(state["model"])
        return state

    def __setstate__(self, state):
        from prophet.serialize import model_from_json

        if isinstance(state.get("model"), str):
            state["model"] = model_from_json(state["model"])
        self.__dict__.update(state)


CANDIDATES: dict[str, type[Model]] = {
    SeasonalNaive.name: SeasonalNaive,
    AutoEts.name: AutoEts,
    AutoThetaModel.name: AutoThetaModel,
    AutoCesModel.name: AutoCesModel,
    SeasonalAr.name: SeasonalAr,
    MstlModel.name: MstlModel,
    Arima.name: Arima,
    ProphetModel.name: ProphetModel,
}
BASELINE = SeasonalNaive.name
ENSEMBLE = "ensemble"
