"""Metadata helpers shared by the asset modules: what people read in the UI."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd


def _plain(value):
    """A cell as the scalar Dagster's table records hold (str, int, float, bool or None)."""
    if value is None or (
        not isinstance(value, str | bytes) and pd.api.types.is_scalar(value) and pd.isna(value)
    ):
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)


def table_metadata(df: pd.DataFrame, max_rows: int = 20) -> dg.TableMetadataValue:
    """The first `max_rows` rows as Dagster table metadata: the UI shows a table with typed
    columns (not a markdown string)."""
    head = df.head(max_rows)
    records = [dg.TableRecord({str(k): _plain(v) for k, v in row.items()}) for row in head.to_dict("records")]
    return dg.MetadataValue.table(records=records, schema=column_schema(head))


def column_schema(df: pd.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name=str(c), type=str(t)) for c, t in df.dtypes.items()])


def frame_metadata(df: pd.DataFrame, preview_rows: int = 10) -> dict:
    return {
        "dagster/column_schema": column_schema(df),
        "preview": table_metadata(df, preview_rows),
    }


def partitioned_metadata(
    df: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, counts: pd.Series | None = None
) -> dict:
    """Metadata of a monthly-partitioned output that describes what it says. Dagster copies an
    output's metadata onto the event of every partition the run wrote: a run over one month
    previews that month (`preview`); a range run's preview is the range's (`run_preview`,
    labelled with it), beside its lines per partition, never passed off as one month's.
    `counts`: rows per partition key, when `df` is only the first month of the run."""
    from mlops_assets.assets.partitions import KEY_FORMAT
    from mlops_assets.core.schemas import PARTITION_COLUMN

    months = pd.period_range(start, end - pd.Timedelta(days=1), freq="M")
    if len(months) <= 1:
        return frame_metadata(df)
    if counts is None:
        keys = df[PARTITION_COLUMN].dt.strftime(KEY_FORMAT) if len(df) else pd.Series(dtype=str)
        counts = keys.value_counts()
    counts = counts.reindex([m.strftime(KEY_FORMAT) for m in months], fill_value=0)
    label = f"{months[0].strftime(KEY_FORMAT)}...{months[-1].strftime(KEY_FORMAT)}"
    return {
        "dagster/column_schema": column_schema(df),
        "run_preview": table_metadata(df, 10),
        "run_preview_covers": label,
        "rows_per_partition": table_metadata(
            counts.rename_axis("partition").rename("rows").reset_index(), 120
        ),
    }


def only_selected(context: dg.AssetExecutionContext, events):
    """The outputs and check results a run selected, from a multi-asset step that computes all
    of them: a run of one of its assets (a click in the UI, `--select a_report`, `*downstream`)
    publishes that asset and its checks alone."""
    assets, checks = context.selected_asset_keys, context.selected_asset_check_keys
    by_output = context.assets_def.keys_by_output_name
    for event in events:
        if isinstance(event, dg.Output) and by_output.get(event.output_name) not in assets:
            continue
        if isinstance(event, dg.AssetCheckResult):
            key = dg.AssetCheckKey(event.asset_key, event.check_name)
            if key not in checks:
                continue
        yield event


def model_selected(context: dg.AssetExecutionContext, model: str) -> bool:
    """Whether the run selected the model asset itself: a run of only a training step's report
    trains for that report and registers nothing (nobody asked for a new version)."""
    selected = dg.AssetKey(model) in context.selected_asset_keys
    if not selected:
        context.log.info(f"{model} is not selected in this run: trained for the report only, not registered")
    return selected
