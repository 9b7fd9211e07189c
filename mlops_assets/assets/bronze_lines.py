"""The order lines of a run, read a file at a time into the run's stage (core/staging.py), and
the bronze gates judged on what every file held, counted as the files stream past.

Only one file's lines are in memory at a time. The gates say what they said when they judged
one frame of every line (core/schemas.py's raw_schema and null_rate_schema, which still judge the
reference sources): a column breaks `parses_as_<kind>` when more than
quality.max_unparseable_share of its values present in the files do not parse, and
`null_rate<=x` when its null share over every line read is above its ceiling.
"""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
from pandas.api.types import is_datetime64_any_dtype as is_datetime

from mlops_assets.assets._metadata import partitioned_metadata
from mlops_assets.assets.ingestion import files_result
from mlops_assets.checks.gates import Gate
from mlops_assets.core import dates, ingestion, line_cache, pieces, quality
from mlops_assets.core.schemas import CANONICAL, PARTITION_COLUMN
from mlops_assets.core.staging import MonthFiles, Stage
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
    head = raw.frame["order_ts"].dropna().head(100).astype(str) if "order_ts" in raw.frame else None
    facts["dm_dates"] = bool(head is not None and head.str.match(dates.PATTERN).any())
    return facts


def month_facts(typed: pd.DataFrame, bounds) -> tuple[dict, int]:
    """Per month of partition day: its lines and their first and last timestamps; and the lines
    of days not complete yet."""
    ts = typed["order_ts"].groupby(typed[PARTITION_COLUMN].dt.to_period("M"), sort=True)
    stats = pd.DataFrame({"lines": ts.size(), "min": ts.min(), "max": ts.max()})  # no copy of the lines
    months = {
        str(month): {"lines": int(row["lines"]), "min": _stamp(row["min"]), "max": _stamp(row["max"])}
        for month, row in stats.iterrows()
    }
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


def date_order(settings: Settings, files: list, first: ingestion.RawSource, whole: bool) -> tuple:
    """(order, fault) of numeric day/month order dates, decided over every file as if they were
    one column (core/dates.py). `first`: the first file read (its first piece, unless `whole`).
    Each file decides for itself (DETECT) when it is the only one and was read whole, when the
    source has a date format, or when the first dates are not numeric day/month ones (ISO and
    the like). Only otherwise are the date columns of every file read (a piece at a time),
    before their lines are."""
    spec = settings.source(SOURCE)
    column = spec.columns.get("order_ts")
    values = first.frame.get("order_ts")
    if (len(files) < 2 and whole) or spec.read.get("date_format") or values is None or is_datetime(values):
        return ingestion.DETECT, None
    head = values.dropna().astype(str).head(100)
    if not head.str.match(dates.PATTERN).any():
        return ingestion.DETECT, None
    seen = dict.fromkeys(head)
    for path in files:
        for got in ingestion.read_pieces(SOURCE, path, spec.read, {"order_ts": column}, settings.data_dir):
            text = got.frame.get("order_ts", pd.Series(dtype=object)).dropna().astype(str)
            seen.update(dict.fromkeys(text.str.slice(0, 10).unique()))
    return dates.day_first(pd.Series(list(seen), dtype=object))


@dataclass
class _Order:
    """How numeric dates are read, once the first file read has decided it."""

    order: bool | None | str = ingestion.DETECT
    decided: bool = False
    cached: bool = True  # False: the decision was read off every file, so files are not cached


def stage_lines(settings: Settings, window, start: pd.Timestamp, end: pd.Timestamp, stage: Stage):
    """Stage every file's lines of the run's days: an unchanged file's from the cache of files
    already read (core/line_cache.py), the others read a piece at a time, typed and cached.
    Returns the stream's summary (a RawSource without its frame) and the counts the gates
    judge."""
    spec = settings.source(SOURCE)
    files = settings.files(SOURCE)
    digests = [_digest(p) for p in files]
    summary = ingestion.RawSource(
        frame=pd.DataFrame(), files=files, mapped=list(spec.columns), root=settings.data_dir,
        content_hash=line_cache.combined([d or b"" for d in digests]),
        renamed={user: canon for canon, user in spec.columns.items()},
    )  # fmt: skip
    bounds = window.bounds
    how = {"read": spec.read, "columns": spec.columns, "start": bounds.start}  # the end: per entry
    cache = line_cache.LineCache(settings.data_dir, line_cache.reading_digest(**how))
    audit, dating = Audit(), _Order()
    for index, (path, digest) in enumerate(zip(files, digests, strict=True)):
        facts = cache.load(digest, bounds.end) if dating.cached and digest else None
        if facts is not None and not dating.decided and facts["dm_dates"] and len(files) - index > 1:
            facts, dating.cached = None, False  # day/month dates over several files: decided by reading
        if facts is not None:
            dating.decided = True
            folder = cache.entry(digest)
        else:
            reader = _FileReader(settings, window, summary, dating, files[index:])
            got = reader.read(
                path, cache if dating.cached and digest else None, digest, stage.root / f"{index:06d}"
            )
            if got is None:  # a fault: named in summary.faults, nothing of the file staged
                continue
            folder, facts = got
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


class _FileReader:
    """One file read a piece at a time: each piece typed, its lines given their days (the
    lines at a piece's start that have no day of their own take the day of the piece before),
    written a month per Parquet file, and counted."""

    def __init__(self, settings: Settings, window, summary: ingestion.RawSource, dating: _Order, files: list):
        self.settings, self.bounds, self.summary, self.dating, self.files = (
            settings,
            window.bounds,
            summary,
            dating,
            files,
        )
        self.spec = settings.source(SOURCE)

    def read(self, path, cache, digest, scratch: Path) -> tuple[Path, dict] | None:
        folder = cache.folder_for(digest) if cache else scratch
        months = MonthFiles(folder)
        facts: dict | None = None
        carry = None
        try:
            parts = ingestion.read_pieces(
                SOURCE, path, self.spec.read, self.spec.columns, self.settings.data_dir
            )
            for number, raw in enumerate(parts):
                if raw.faults:
                    self.summary.faults.update(raw.faults)
                    months.close()
                    shutil.rmtree(folder, ignore_errors=True)
                    return None
                if not self.dating.decided:  # the first file read decides how the others are typed
                    self._decide(raw, whole=number == 0 and not _streamed(path, self.spec))
                typed = ingestion.typed_frame(
                    SOURCE, raw, self.spec.read.get("date_format"), self.dating.order
                )
                part = file_facts(raw, typed)
                typed = ingestion.with_bad_lines(typed, raw)
                typed[PARTITION_COLUMN] = quality.attribute_partitions(typed, self.bounds, before=carry)
                carry = typed[PARTITION_COLUMN].iloc[-1] if len(typed) else carry
                part["months"], part["awaiting"] = month_facts(typed, self.bounds)
                part |= line_cache.end_facts(typed["order_ts"], self.bounds.end)
                facts = part if facts is None else merged(facts, part)
                months.write(typed)
                del raw, typed
        finally:
            months.close()
        if facts is None:  # nothing in it (read_pieces names a file without lines a fault)
            return None
        return (cache.store(digest, folder, facts, self.bounds.end) if cache else folder), facts

    def _decide(self, raw: ingestion.RawSource, whole: bool) -> None:
        (self.dating.order, problem), self.dating.decided = (
            date_order(self.settings, self.files, raw, whole),
            True,
        )
        self.dating.cached = self.dating.cached and self.dating.order == ingestion.DETECT
        if problem:
            user = self.spec.columns["order_ts"]
            self.summary.column_faults.append(f"column '{user}' (mapped to order_ts) {problem}")


def _streamed(path: Path, spec) -> bool:
    return pieces.streamable(
        path, {k: v for k, v in spec.read.items() if k not in ingestion.READER_ONLY_KEYS}
    )


def merged(a: dict, b: dict) -> dict:
    """The facts of two pieces of one file, as one."""
    out = dict(a)
    for key in ("rows", "bad_lines", "awaiting"):
        out[key] = a[key] + b[key]
    for key in ("present", "bad", "nulls"):
        out[key] = {k: a[key].get(k, 0) + b[key].get(k, 0) for k in {*a[key], *b[key]}}
    out["examples"] = {}
    for col in {*a["examples"], *b["examples"]}:
        shown = a["examples"].get(col, [])
        out["examples"][col] = (shown + [v for v in b["examples"].get(col, []) if v not in shown])[:EXAMPLES]
    out["columns"] = list(dict.fromkeys([*a["columns"], *b["columns"]]))
    out["notes"] = list(dict.fromkeys([*a["notes"], *b["notes"]]))
    out["column_faults"] = list(dict.fromkeys([*a["column_faults"], *b["column_faults"]]))
    months = {m: dict(f) for m, f in a["months"].items()}
    for m, f in b["months"].items():
        if m not in months:
            months[m] = dict(f)
            continue
        have = months[m]
        have["lines"] += f["lines"]
        stamps = [s for s in (have["min"], have["max"], f["min"], f["max"]) if s is not None]
        have["min"] = min(stamps, key=pd.Timestamp) if stamps else None
        have["max"] = max(stamps, key=pd.Timestamp) if stamps else None
    out["months"] = dict(sorted(months.items()))
    return out | line_cache.merged_end_facts(a, b)


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
