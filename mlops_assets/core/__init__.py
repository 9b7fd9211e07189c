"""Plain-Python core: schemas, ingestion, quality rules. Never imports dagster."""
