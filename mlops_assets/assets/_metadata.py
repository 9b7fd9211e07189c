"""Metadata helpers shared by the asset modules: what people read in the UI."""

from __future__ import annotations

import dagster as dg
import pandas as pd


def md_table(df: pd.DataFrame, max_rows: int = 20) -> dg.MetadataValue:
    return dg.MetadataValue.md(df.head(max_rows).to_markdown(index=False, floatfmt=".4g"))


def column_schema(df: pd.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name=str(c), type=str(t)) for c, t in df.dtypes.items()])


def frame_metadata(df: pd.DataFrame, preview_rows: int = 10) -> dict:
    return {
        "dagster/column_schema": column_schema(df),
        "preview": md_table(df, preview_rows),
    }
