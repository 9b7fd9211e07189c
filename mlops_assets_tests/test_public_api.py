"""The code location uses current public Dagster APIs only (issue 16): no import of Dagster's
private modules, and every resource is a ConfigurableResource (no legacy @resource)."""

import ast
from pathlib import Path

import dagster as dg

from mlops_assets.definitions import resources
from mlops_assets.settings import load_settings

PACKAGE = Path(__file__).resolve().parent.parent / "mlops_assets"


def private_imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        found += [n for n in names if n.split(".")[0].startswith("dagster") and "._" in n]
    return found


def test_private_imports_are_found_where_they_are():
    assert private_imports("from dagster._core.storage import x\nimport dagster_duckdb._x") == [
        "dagster._core.storage",
        "dagster_duckdb._x",
    ]
    assert private_imports("import dagster as dg\nfrom dagster_duckdb.io_manager import DuckDbClient") == []


def test_no_module_imports_dagster_internals():
    offenders = {
        str(path.relative_to(PACKAGE)): private_imports(path.read_text()) for path in PACKAGE.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_every_resource_is_a_configurable_resource():
    for key, resource in resources(load_settings(None)).items():
        pythonic = dg.ConfigurableResource | dg.ConfigurableIOManager | dg.ConfigurableIOManagerFactory
        assert isinstance(resource, pythonic), key
