"""mlops_assets: a Dagster-native MLOps platform for retail analytics."""
