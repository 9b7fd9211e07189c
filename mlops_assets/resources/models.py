"""Fitted models as files under models/ in the data directory, one folder per model asset."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import dagster as dg


class ModelIOManager(dg.ConfigurableIOManager):
    """Pickles a model asset's output to `<directory>/<asset>/model.pkl` (written to a temporary
    file and renamed, so a reader never sees half a model) and loads it for downstream scoring.
    An asset that does not emit its output (a failed gate) leaves the previous file in place."""

    directory: str

    def path(self, asset_key: dg.AssetKey) -> Path:
        return Path(self.directory, *asset_key.path, "model.pkl")

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        path = self.path(context.asset_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path)), "bytes": path.stat().st_size})

    def load_input(self, context: dg.InputContext):
        path = self.path(context.asset_key)
        if not path.is_file():
            raise FileNotFoundError(
                f"no fitted model at {path}: materialize {context.asset_key.to_user_string()} first"
            )
        with path.open("rb") as fh:
            return pickle.load(fh)
