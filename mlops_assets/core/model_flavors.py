"""How each trained model is saved as an MLflow model: scikit-learn's flavor where the model is
a scikit-learn estimator, pyfunc otherwise. Every saved model also carries the project's own
object (`model.pkl`) so that the platform reloads exactly what it trained."""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path

import mlflow.pyfunc
import mlflow.sklearn
import pandas as pd

OBJECT = "model.pkl"  # the pickled training object inside every saved model folder
TRUSTED = [
    "mlops_assets.core.segmentation.SignedLog",
    "mlops_assets.core.segmentation.CoreDBSCAN",
    "numpy.dtype",
    # DBSCAN's nearest-core-point scorer keeps a fitted neighbour index
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
]


def requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("scikit-learn", "pandas", "numpy", "statsmodels", "prophet")]


class PickledModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper around a project object: predict(frame) calls the object's own scoring
    (`assign` for segmenters, `score` for anomaly detectors, stored forecasts for forecasters)."""

    def load_context(self, context):
        with open(context.artifacts["object"], "rb") as fh:
            self.obj = pickle.load(fh)

    def predict(self, context, model_input: pd.DataFrame, params=None):
        return score(self.obj, model_input)


SCORING = ("assign", "score", "predict_frame", "predict")  # segmenter, detector, forecaster, CLV


def score(obj, frame: pd.DataFrame):
    """What the object's pyfunc answers for `frame`: its own scoring method."""
    for method in SCORING:
        if hasattr(obj, method):
            out = getattr(obj, method)(frame)
            return out.to_frame() if isinstance(out, pd.Series) else out
    raise TypeError(f"{type(obj).__name__} has no scoring method ({', '.join(SCORING)})")


def signature(model, example: pd.DataFrame | None, sklearn: bool):
    """The MLflow signature: the example's columns and types in, the model's answer on it out."""
    if example is None:
        return None
    from mlflow.models import infer_signature

    # the scikit-learn pipelines were fitted on arrays: they score the example's values
    output = model.predict(example.to_numpy()) if sklearn else score(model, example)
    return infer_signature(example, output)


def save(obj, folder: Path, sklearn_model=None, example: pd.DataFrame | None = None) -> Path:
    """Write an MLflow model folder for `obj` (scikit-learn flavor of `sklearn_model` when
    given, else pyfunc) with the pickled object beside it and, from `example` (a few rows of
    what the model scores), its signature; returns the folder."""
    with tempfile.TemporaryDirectory() as tmp:
        pickled = Path(tmp) / OBJECT
        pickled.write_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
        if sklearn_model is not None:
            mlflow.sklearn.save_model(
                sklearn_model,
                str(folder),
                pip_requirements=requirements(),
                extra_files=[str(pickled)],
                skops_trusted_types=TRUSTED,  # MLflow serializes with skops: our steps are trusted
                signature=signature(sklearn_model, example, sklearn=True),
                input_example=example,
            )
        else:
            mlflow.pyfunc.save_model(
                str(folder),
                python_model=PickledModel(),
                artifacts={"object": str(pickled)},
                pip_requirements=requirements(),
                signature=signature(obj, example, sklearn=False),
                input_example=example,
            )
    return folder


def load(folder: Path):
    """The project object of a saved model folder (either flavor keeps it somewhere inside)."""
    found = next(folder.rglob(OBJECT), None)
    if found is None:
        raise FileNotFoundError(f"no {OBJECT} in {folder}")
    with found.open("rb") as fh:
        return pickle.load(fh)
