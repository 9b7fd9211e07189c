"""Resources and IO managers (warehouse tables, models through the registry)."""

from mlops_assets.resources.models import Champion, RegistryModelIOManager
from mlops_assets.resources.warehouse import WarehouseIOManager, warehouse_io_manager

__all__ = ["Champion", "RegistryModelIOManager", "WarehouseIOManager", "warehouse_io_manager"]
