"""Seeded sample data: a retailer's order lines, catalog and inventory (see generator.py)."""

from mlops_assets.sample_data.generator import SampleData, generate

__all__ = ["SampleData", "generate"]
