"""Resources and IO managers (warehouse, model files)."""

from mlops_assets.resources.models import ModelIOManager
from mlops_assets.resources.warehouse import WarehouseIOManager

__all__ = ["ModelIOManager", "WarehouseIOManager"]
