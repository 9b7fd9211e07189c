"""Resources and IO managers (warehouse)."""

from mlops_assets.resources.warehouse import WarehouseIOManager

__all__ = ["WarehouseIOManager"]
