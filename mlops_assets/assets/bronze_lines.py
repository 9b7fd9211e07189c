"""The order lines of a run, read a file at a time into the run's stage (core/staging.py), and
the bronze gates judged on what every file held, counted as the files stream past.

Only one file's lines are in memory at a time. The gates say what they said when they judged
one frame of every line (core/schemas.py's raw_schema and null_rate_schema, which still judge the
reference sources): a column breaks `parses_as_<kind>` when more than
quality.max_unparseable_share of its values present in the files do not parse, and
`null_rate<=x` when its null share over every line read is above its ceiling.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
from pandas.api.types import is_datetime64_any_dtype as is_datetime

from mlops_assets.assets._metadata import partitioned_metadata
from mlops_assets.assets.ingestion import files_result
from mlops_assets.checks.gates import Gate
from mlops_assets.core import dates, ingestion, line_cache, quality
from mlops_assets.core.schemas import CANONICAL, PARTITION_COLUMN
from mlops_assets.core.staging import Stage, by_month
from mlops_assets.settings import Settings

SOURCE = "transactions"
EXAMPLES = 3


def file_facts(raw: ingestion.RawSource, typed: pd.DataFrame) -> dict:
    """What the bronze gates count of one file, as JSON (kept with its lines in the cache)."""
    facts: dict = {"rows": len(raw.frame), "bad_lines": len(raw.bad_lines), "notes": raw.notes}
    facts |= {"present": {}, "bad": {}, "examples": {}, "columns": [], "column_faults": raw.column_faults}
    for col in raw.frame.columns.intersection(raw.mapped):
        facts["columns"].append(col)
        values = raw.frame[col]
        facts["present"][col] = int(values.notna().sum())
        bad = values.notna() & typed[col].isna()
        if bad.any():
            bad[bad] = ingestion.present(values[bad]).to_numpy(dtype=bool)
        facts["bad"][col] = int(bad.sum())
        facts["examples"][col] = [repr(v) for v in values[bad].drop_duplicates().head(EXAMPLES)]
    facts["nulls"] = {col: int(typed[col].isna().sum()) for col in CANONICAL[SOURCE]}
    head = raw.frame["order_ts"].dropna().astype(str).head(100) if "order_ts" in raw.frame else None
    facts["dm_dates"] = bool(head is not None and head.str.match(dates.PATTERN).any())
    return facts


def month_facts(typed: pd.DataFrame, bounds) -> tuple[dict, int]:
    """Per month of partition day: its lines and their first and last timestamps; and the lines
    of days not complete yet."""
    months = {}
    for month, part in typed.groupby(typed[PARTITION_COLUMN].dt.to_period("M"), sort=True):
        ts = part["order_ts"]
        months[str(month)] = {"lines": len(part), "min": _stamp(ts.min()), "max": _stamp(ts.max())}
    return months, int((typed[PARTITION_COLUMN] >= bounds.end).sum())


def _stamp(value) -> str | None:
    return None if pd.isna(value) else str(value)


@dataclass
class Audit:
    """Counts over every file of the source, for the bronze gates and the bronze metadata."""

    rows: int = 0  # records that became rows (a bad line is not one)
    present: Counter = field(default_factory=Counter)  # mapped column -> values present
    bad: Counter = field(default_factory=Counter)  # mapped column -> present values that did not parse
    examples: dict[str, list] = field(default_factory=dict)  # mapped column -> repr of a few
    nulls: Counter = field(default_factory=Counter)  # canonical column -> nulls once typed
    columns: set[str] = field(default_factory=set)  # mapped columns some file has
    bad_lines: int = 0
    staged: int = 0  # lines of the run's partitions
    awaiting: int = 0  # lines of days not complete yet
    dates: list = field(default_factory=list)  # first and last order_ts of the staged lines
    read: int = 0  # files read this run (the others were unchanged: cached)

    def add(self, facts: dict, run_months: dict) -> None:
        self.rows += facts["rows"]
        self.bad_lines += facts["bad_lines"]
        self.columns |= set(facts["columns"])
        self.present.update(facts["present"])
        self.bad.update(facts["bad"])
        self.nulls.update(facts["nulls"])
        self.awaiting += facts["awaiting"]
        for col, shown in facts["examples"].items():
            seen = self.examples.setdefault(col, [])
            seen += [v for v in shown if v not in seen][: EXAMPLES - len(seen)]
        for month in run_months.values():
            self.staged += month["lines"]
            self.dates += [pd.Timestamp(month[k]) for k in ("min", "max") if month[k] is not None]


def date_order(settings: Settings, files: list, first: ingestion.RawSource) -> tuple:
    """(order, fault) of numeric day/month order dates, decided over every file as if they were
    one column (core/dates.py). `first`: the first file, read. Each file decides for itself
    (DETECT) when there is one file, a date format, or the first file's dates are not numeric
    day/month ones (ISO and the like); only otherwise are the other files' date columns read,
    before their lines are."""
    spec = settings.source(SOURCE)
    column = spec.columns.get("order_ts")
    values = first.frame.get("order_ts")
    if len(files) < 2 or spec.read.get("date_format") or values is None or is_datetime(values):
        return ingestion.DETECT, None
    head = values.dropna().astype(str).head(100)
    if not head.str.match(dates.PATTERN).any():
        return ingestion.DETECT, None
    seen = dict.fromkeys(head)
    for path in files[1:]:
        got = ingestion.read_source(SOURCE, [path], spec.read, {"order_ts": column}, settings.data_dir)
        text = got.frame.get("order_ts", pd.Series(dtype=object)).dropna().astype(str)
        seen.update(dict.fromkeys(text.str.slice(0, 10).unique()))
    seen.update(dict.fromkeys(values.dropna().astype(str).str.slice(0, 10).unique()))
    return dates.day_first(pd.Series(list(seen), dtype=object))


def stage_lines(settings: Settings, window, start: pd.Timestamp, end: pd.Timestamp, stage: Stage):
    """Stage every file's lines of the run's days: an unchanged file's from the cache of files
    already read (core/line_cache.py), the others read, typed and cached. Returns the stream's
    summary (a RawSource without its frame) and the counts the gates judge."""
    spec = settings.source(SOURCE)
    files = settings.files(SOURCE)
    digests = [_digest(p) for p in files]
    summary = ingestion.RawSource(
        frame=pd.DataFrame(), files=files, mapped=list(spec.columns), root=settings.data_dir,
        content_hash=line_cache.combined([d or b"" for d in digests]),
        renamed={user: canon for canon, user in spec.columns.items()},
    )  # fmt: skip
    bounds = window.bounds
    how = {"read": spec.read, "columns": spec.columns, "start": bounds.start, "end": bounds.end}
    cache = line_cache.LineCache(settings.data_dir, line_cache.reading_digest(**how))
    audit, order, decided, cached = Audit(), ingestion.DETECT, False, True
    for index, (path, digest) in enumerate(zip(files, digests, strict=True)):
        facts = cache.load(digest) if cached and digest else None
        if facts is not None and not decided and facts["dm_dates"] and len(files) - index > 1:
            facts, cached = None, False  # day/month dates over several files: decided by reading
        if facts is not None:
            decided = True
            folder = cache.entry(digest)
        else:
            raw = ingestion.read_source(SOURCE, [path], spec.read, spec.columns, settings.data_dir)
            summary.faults.update(raw.faults)
            if raw.faults:
                continue
            if not decided:  # the first file read decides how the others are typed
                (order, problem), decided = date_order(settings, files[index:], raw), True
                cached = cached and order == ingestion.DETECT
                if problem:
                    user = spec.columns["order_ts"]
                    summary.column_faults.append(f"column '{user}' (mapped to order_ts) {problem}")
            folder, facts = _read(
                raw, order, window, spec, cache if cached and digest else None, digest, stage, index
            )
            audit.read += 1
        summary.column_faults += [f for f in facts["column_faults"] if f not in summary.column_faults]
        summary.notes += [n for n in facts["notes"] if n not in summary.notes]
        run_months = {m: f for m, f in facts["months"].items() if start <= pd.Timestamp(m) < end}
        audit.add(facts, run_months)
        for month, f in run_months.items():
            stage.add_lines(pd.Timestamp(month), folder / f"{month}.parquet", f["lines"])
        if stage.schema is None and facts["months"]:
            stage.schema = pq.read_schema(folder / f"{next(iter(facts['months']))}.parquet")
    if not any(d is None for d in digests):
        cache.prune()
    summary.missing = (
        [c for c in spec.columns if c not in audit.columns] if len(summary.faults) < len(files) else []
    )
    return summary, audit


def _digest(path) -> bytes | None:
    try:
        return line_cache.file_digest(path)
    except OSError:  # removed since it was listed: read_source names the fault
        return None


def _read(raw, order, window, spec, cache, digest, stage: Stage, index: int):
    """Type a file just read, give its lines their days, and write them a month per Parquet
    file (into the cache when there is one): (its folder, its facts)."""
    typed = ingestion.typed_frame(SOURCE, raw, spec.read.get("date_format"), day_first=order)
    facts = file_facts(raw, typed)
    typed = ingestion.with_bad_lines(typed, raw)
    typed[PARTITION_COLUMN] = quality.attribute_partitions(typed, window.bounds)
    facts["months"], facts["awaiting"] = month_facts(typed, window.bounds)
    folder = cache.folder_for(digest) if cache else stage.root / "lines" / f"{index:06d}"
    by_month(typed, folder)
    del raw, typed
    return (cache.store(digest, folder, facts) if cache else folder), facts


def audit_results(
    settings: Settings, summary: ingestion.RawSource, audit: Audit, gates: tuple[Gate, Gate, Gate]
) -> list[dg.AssetCheckResult]:
    files_gate, schema_gate, null_gate = gates
    where = summary.file_label
    results = [files_result(files_gate, summary, quarantined=True, bad_lines=audit.bad_lines)]
    if summary.faults and len(summary.faults) == len(summary.files):  # nothing read: nothing to judge
        return results + [
            g.result(False, f"{g.name} not evaluated: no source file could be read") for g in gates[1:]
        ]
    return results + [
        _schema(settings, schema_gate, summary, audit, where),
        _nulls(settings, null_gate, summary, audit, where),
    ]


def _judged(gate: Gate, sentences: list[str], rows: int, where: str) -> dg.AssetCheckResult:
    if not sentences:
        return gate.result(True, f"{gate.name} passed on {where} ({rows:,} rows)", {"rows_checked": rows})
    text = f"{gate.name} failed on {where}: " + "; ".join(sentences)
    return gate.result(False, text, {"failed_rules": len(sentences)})


def _schema(settings, gate: Gate, summary, audit: Audit, where: str) -> dg.AssetCheckResult:
    """raw_schema's judgement, from the counts: every mapped column present, and parsing."""
    share = settings.quality.max_unparseable_share
    spec = settings.source(SOURCE)
    sentences = [
        f"column '{c}' (mapped from file column '{spec.columns[c]}') is missing from {where} "
        "(rule: column_in_dataframe)"
        for c in summary.missing
    ]
    for col in summary.mapped:
        if col in summary.missing or audit.bad[col] <= share * max(1, audit.present[col]):
            continue
        shown = ", ".join(audit.examples.get(col, []))
        kind = CANONICAL[SOURCE][col]
        sentences.append(
            f"column '{col}' breaks rule parses_as_{kind} in {audit.bad[col]:,} of {audit.rows:,} rows "
            f"(e.g. {shown})"
        )
    return _judged(gate, sentences, audit.rows, where)


def _nulls(settings, gate: Gate, summary, audit: Audit, where: str) -> dg.AssetCheckResult:
    sentences = []
    for col in summary.mapped:
        if col in summary.missing:
            continue
        ceiling = settings.quality.null_ceiling(col)
        rate = audit.nulls[col] / audit.rows if audit.rows else 0.0
        if rate > ceiling:
            sentences.append(f"column '{col}' breaks rule null_rate<={ceiling:g} (null share {rate:.1%})")
    return _judged(gate, sentences, audit.rows, where)


def bronze_metadata(summary: ingestion.RawSource, audit: Audit, counts: pd.Series, first: pd.DataFrame,
                    start: pd.Timestamp, end: pd.Timestamp) -> dict:  # fmt: skip
    """What the bronze output says in the UI: the source, the run's rows, per partition."""
    return {
        "source_paths": ", ".join(str(p) for p in summary.files),
        "source_files": summary.file_label,
        "source_content_hash": summary.content_hash,
        "source_rows": audit.rows + audit.bad_lines,
        "unreadable_lines": audit.bad_lines,
        "date_min": str(min(audit.dates)) if audit.dates else "none",
        "date_max": str(max(audit.dates)) if audit.dates else "none",
        "notes": "\n".join(summary.notes) or "none",
        "rows_in_run_partitions": audit.staged,
        "rows_in_other_partitions": audit.rows + audit.bad_lines - audit.staged - audit.awaiting,
        "rows_awaiting_partition": audit.awaiting,
        "run_partitions": f"{start.date()} .. {(end - pd.Timedelta(days=1)).date()}",
        **partitioned_metadata(first, start, end, counts),
    }
