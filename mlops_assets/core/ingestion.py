"""Read the user's files per sources.yaml, rename to the canonical schema, and type them."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import is_datetime64_any_dtype as is_datetime

from mlops_assets.core import csv_reader, dates, pieces, quality
from mlops_assets.core.schemas import CANONICAL, DEFAULT_DIMENSION, LINEAGE, TEXT, UNPARSED

READER_ONLY_KEYS = {"date_format", "dayfirst"}  # ours, applied when typing, not by the reader
# formats pyarrow's string-to-timestamp cast reads exactly as strptime would
ISO_FORMATS = {"%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"}
# options the line-safe reader (pyarrow, then Python's csv for files pyarrow refuses) understands
PYARROW_SAFE = {"sep", "delimiter", "encoding", "quotechar", "na_values", "escapechar"}


@dataclass
class RawSource:
    """A source as read: user columns renamed to canonical names, values untouched."""

    frame: pd.DataFrame
    files: list[Path]
    content_hash: str
    mapped: list[str]  # canonical columns sources.yaml maps
    missing: list[str] = field(default_factory=list)  # mapped, but absent from the files
    notes: list[str] = field(default_factory=list)
    # records that could not become rows: source_file, source_row, raw_line, read_fault
    bad_lines: pd.DataFrame = field(default_factory=lambda: _no_bad_lines())
    faults: dict[str, str] = field(default_factory=dict)  # file label -> why it cannot be read
    column_faults: list[str] = field(default_factory=list)  # a column that cannot be read safely
    renamed: dict[str, str] = field(default_factory=dict)  # file column -> canonical name

    root: Path | None = None

    @property
    def file_label(self) -> str:
        names = [relative_label(p, self.root) for p in self.files[:3]]
        return ", ".join(names) + (" ..." if len(self.files) > 3 else "")


def relative_label(path: Path, root: Path | None) -> str:
    return str(path.relative_to(root)) if root and path.is_relative_to(root) else str(path)


def content_hash(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        with open(path, "rb") as fh:
            digest.update(hashlib.file_digest(fh, "sha256").digest())
    return digest.hexdigest()[:16]


def _no_bad_lines() -> pd.DataFrame:
    return csv_reader.bad_frame([], [], []).assign(source_file=pd.Series(dtype=TEXT))


def read_source(
    name: str,
    files: list[Path],
    read: dict[str, Any],
    columns: dict[str, str],
    root: Path | None = None,
    max_field_chars: int = csv_reader.MAX_FIELD_CHARS,
) -> RawSource:
    """Read every file of one source; rename mapped columns; keep lineage per row
    (source_file relative to `root`, the data directory, when the file lies inside it).
    A file that cannot be read at all is a fault (named, nothing of it read); a record that
    cannot become a row is a bad line (kept with its raw text and why)."""
    wanted, string_cols = _wanted(name, columns)
    reads = [
        (relative_label(p, root), _read_file(p, read, set(wanted), string_cols, max_field_chars))
        for p in files
    ]
    return _assembled(reads, files, columns, root, content_hash(files))


def read_pieces(
    name: str,
    path: Path,
    read: dict[str, Any],
    columns: dict[str, str],
    root: Path | None = None,
    max_field_chars: int = csv_reader.MAX_FIELD_CHARS,
) -> Iterator[RawSource]:
    """One file of a source as read_source reads it, a piece at a time when it is large
    (core/pieces.py), else whole; a piece with faults ends the file."""
    opts = {k: v for k, v in read.items() if k not in READER_ONLY_KEYS}
    suffixes = "".join(path.suffixes).lower()
    delimited = ".parquet" not in suffixes and not suffixes.endswith(".pq") and _pyarrow_ok(opts)
    if not (delimited and pieces.streamable(path, opts)):
        yield read_source(name, [path], read, columns, root, max_field_chars)
        return
    wanted, string_cols = _wanted(name, columns)
    label = relative_label(path, root)
    for got in pieces.read_pieces(path, opts, set(wanted), string_cols, max_field_chars):
        yield _assembled([(label, got)], [path], columns, root, "")


def _wanted(name: str, columns: dict[str, str]) -> tuple[dict[str, str], set[str]]:
    """file column -> canonical name, and the file columns read as text."""
    wanted = {user: canon for canon, user in columns.items()}
    string_cols = {u for u, c in wanted.items() if CANONICAL[name][c] in ("string", "datetime")}
    return wanted, string_cols


def _assembled(
    reads: list[tuple[str, csv_reader.FileRead]],
    files: list[Path],
    columns: dict[str, str],
    root,
    digest: str,
) -> RawSource:
    wanted = {user: canon for canon, user in columns.items()}
    frames, bad, faults = [], [], {}
    present: set[str] = set()
    for label, got in reads:
        if got.fault:
            faults[label] = got.fault
            continue
        df = got.frame
        present |= set(df.columns)
        df = df.rename(columns=wanted)
        df["source_file"] = constant_text(label, df.index)
        df["source_row"] = got.rows
        frames.append(df)
        if len(got.bad):
            bad.append(got.bad.assign(source_file=constant_text(label, got.bad.index)))
    if not frames:
        frames = [pd.DataFrame({c: pd.Series(dtype=TEXT) for c in [*columns, "source_file"]})]
        frames[0]["source_row"] = pd.Series(dtype="int64")
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    readable = len(faults) < len(reads)
    missing = [canon for user, canon in wanted.items() if user not in present] if readable else []
    return RawSource(
        frame=frame,
        files=files,
        content_hash=digest,
        mapped=list(columns),
        missing=missing,
        root=root,
        bad_lines=pd.concat(bad, ignore_index=True) if bad else _no_bad_lines(),
        faults=faults,
        renamed=wanted,
    )


def _read_file(
    path: Path, read: dict[str, Any], wanted: set[str], string_cols: set[str], max_field: int
) -> csv_reader.FileRead:
    opts = {k: v for k, v in read.items() if k not in READER_ONLY_KEYS}
    suffixes = "".join(path.suffixes).lower()
    try:
        if ".parquet" in suffixes or suffixes.endswith(".pq"):
            return csv_reader.FileRead(*_whole(_read_parquet(path, wanted, string_cols)))
        if _pyarrow_ok(opts):
            return csv_reader.read_delimited(path, opts, wanted, string_cols, max_field)
        if set(opts) <= {"sep", "encoding"}:  # a regex separator ('\s+'): split line by line
            # (pandas would pad a short line and silently drop a field too many under usecols)
            encoding = opts.get("encoding", "utf-8")
            return csv_reader.read_split_lines(path, opts.get("sep", ","), encoding, wanted, max_field)
        header = pd.read_csv(path, nrows=0, **_c_opts(opts)).columns
        use = [c for c in header if c in wanted]
        dtype = {c: TEXT for c in use if c in string_cols}
        return csv_reader.FileRead(*_whole(pd.read_csv(path, usecols=use, dtype=dtype, **_c_opts(opts))))
    except FileNotFoundError:
        return csv_reader.faulty("does not exist (it was listed, then removed)")
    except Exception as exc:  # noqa: BLE001  any reader error is this file's fault, named
        return csv_reader.faulty(f"cannot be read ({type(exc).__name__}: {str(exc)[:200]})")


def _whole(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    return frame, np.arange(1, len(frame) + 1)


def _read_parquet(path: Path, wanted: set[str], string_cols: set[str]) -> pd.DataFrame:
    import pyarrow.parquet as pq

    names = set(pq.read_schema(path).names)
    df = pd.read_parquet(path, columns=sorted(wanted & names))
    for col in string_cols & set(df.columns):
        df[col] = _as_string(df[col])
    return df


def _pyarrow_ok(opts: dict[str, Any]) -> bool:
    sep = opts.get("sep", opts.get("delimiter", ","))
    return set(opts) <= PYARROW_SAFE and isinstance(sep, str) and len(sep) == 1


def _c_opts(opts: dict[str, Any]) -> dict[str, Any]:
    sep = opts.get("sep")
    if isinstance(sep, str) and len(sep) > 1 and sep != r"\s+" and re.escape(sep) != sep:
        return {**opts, "engine": "python"}  # a true regex separator needs the python engine
    return opts


def constant_text(value: str, index: pd.Index) -> pd.Series:
    """One string repeated for every row, built in arrow (10x faster than from Python)."""
    import pyarrow as pa

    return pd.Series(pd.arrays.ArrowStringArray(pa.repeat(pa.scalar(value), len(index))), index=index)


def _as_string(s: pd.Series) -> pd.Series:
    """Arrow-backed text: nulls stay null, and string operations run in pyarrow."""
    if s.dtype == TEXT:
        return s
    if s.dtype == object or isinstance(s.dtype, pd.StringDtype):
        return s.astype(TEXT)
    return s.astype(str).astype(TEXT).mask(s.isna())


def parse_column(
    raw: pd.Series, kind: str, date_format: str | None = None, dayfirst: bool = False
) -> pd.Series:
    """Convert one raw column to its canonical type; unparseable values become null."""
    if kind == "float":
        return pd.to_numeric(raw, errors="coerce").astype("float64")
    if kind == "datetime":
        ts = (
            raw
            if pd.api.types.is_datetime64_any_dtype(raw)
            else _parse_timestamps(_as_string(raw), date_format, dayfirst)
        )
        if getattr(ts.dt, "tz", None) is not None:
            ts = ts.dt.tz_convert(None)
        return ts.astype("datetime64[ns]")
    text = _as_string(raw).str.strip()
    blank = text == ""  # blank cells are missing values, whatever the reader made of them
    return text.mask(blank) if blank.any() else text


def _parse_timestamps(text: pd.Series, date_format: str | None, dayfirst: bool = False) -> pd.Series:
    """pyarrow's strptime for one known (or guessed) format, pandas' parser otherwise."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pandas.tseries.api import guess_datetime_format

    first = text.dropna().head(1)
    if len(first) and first.iloc[0] != first.iloc[0].strip():
        text = text.str.strip()  # padding around a timestamp is formatting, not a different value
        first = text.dropna().head(1)
    fmt = date_format or (guess_datetime_format(first.iloc[0], dayfirst=dayfirst) if len(first) else None)
    if fmt in ISO_FORMATS:
        try:  # pyarrow's ISO-8601 cast is 3x faster than strptime; any odd value falls through
            cast = pa.array(text, type=pa.string()).cast(pa.timestamp("ns"))
            return pd.Series(cast, index=text.index).astype("datetime64[ns]")
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            text = text.str.strip()  # perhaps only padded
    if fmt and "%z" not in fmt and "%Z" not in fmt:
        arr = pa.array(text, type=pa.string())
        parsed = pd.Series(pc.strptime(arr, format=fmt, unit="ns", error_is_null=True), index=text.index)
        parsed = parsed.astype("datetime64[ns]")
        if date_format or parsed.notna().sum() >= 0.99 * text.notna().sum():
            return parsed
    return pd.to_datetime(text, format=date_format, errors="coerce", dayfirst=dayfirst)


DETECT = "detect"


def typed_frame(
    name: str, raw: RawSource, date_format: str | None = None, day_first: bool | None | str = DETECT
) -> pd.DataFrame:
    """All canonical columns of `name`, typed; absent optional columns filled with defaults.
    `day_first`: the day and month order of numeric dates, read off the column (DETECT) or
    already decided over every file of the source (see date_order)."""
    src = raw.frame
    out = {}
    unparsed = pd.Series(None, index=src.index, dtype=object)
    users = {canon: user for user, canon in raw.renamed.items()}
    for col, kind in CANONICAL[name].items():
        if col in src.columns:
            order = None
            if kind == "datetime" and date_format is None and not is_datetime(src[col]):
                if day_first != DETECT:
                    order = day_first
                else:
                    order, problem = dates.day_first(src[col])
                    if problem:
                        raw.column_faults.append(
                            f"column '{users.get(col, col)}' (mapped to {col}) {problem}"
                        )
            out[col] = parse_column(src[col], kind, date_format, dayfirst=bool(order))
            failed = out[col].isna() & src[col].notna()
            if failed.any():  # only the few that did not parse: were they blanks?
                failed[failed] = present(src.loc[failed, col]).to_numpy(dtype=bool)
            if failed.any():  # keep the original text of values that did not parse
                text = col + "=" + src.loc[failed, col].astype(str).map(repr)
                prev = unparsed[failed]
                unparsed[failed] = np.where(prev.isna(), text, prev + "; " + text)
        elif kind == "datetime":
            out[col] = pd.Series(pd.NaT, index=src.index, dtype="datetime64[ns]")
        elif kind == "float":
            out[col] = pd.Series(np.nan, index=src.index)
        else:
            out[col] = pd.Series(pd.NA, index=src.index, dtype=TEXT)
    typed = pd.DataFrame(out, index=src.index)
    typed[UNPARSED] = unparsed.astype(TEXT)
    for col in LINEAGE:
        typed[col] = src[col]
    if name == "transactions":
        typed = _complete_transactions(typed, raw)
    return typed


def present(raw: pd.Series) -> pd.Series:
    """Values that hold something: not null and not only blanks (' ' is an empty field)."""
    if raw.dtype == TEXT or raw.dtype == object:
        return raw.notna() & (_as_string(raw).str.strip() != "").fillna(False)
    return raw.notna()


def with_bad_lines(typed: pd.DataFrame, raw: RawSource) -> pd.DataFrame:
    """The typed lines plus one row per bad line, in file order (quality.with_bad_lines)."""
    return quality.with_bad_lines(typed, raw.bad_lines, [relative_label(p, raw.root) for p in raw.files])


def _complete_transactions(df: pd.DataFrame, raw: RawSource) -> pd.DataFrame:
    mapped = set(raw.mapped) - set(raw.missing)
    for dim in ("product_id", "store_id"):
        if dim not in raw.mapped:
            df[dim] = pd.Series(DEFAULT_DIMENSION, index=df.index, dtype=TEXT)
            raw.notes.append(f"no {dim} column mapped: every line gets {dim}='{DEFAULT_DIMENSION}'")
    if "unit_price" not in mapped and "amount" in mapped:
        qty = df["quantity"].where(df["quantity"] != 0)
        df["unit_price"] = df["amount"] / qty
        raw.notes.append("unit_price derived as amount / quantity")
    if "amount" not in mapped:
        df["amount"] = df["quantity"] * df["unit_price"]
    if "order_id" not in raw.mapped:
        who = df["customer_id"].fillna("guest@" + df["store_id"].astype(str))
        df["order_id"] = who + "|" + df["order_ts"].dt.strftime("%Y-%m-%dT%H:%M:%S").fillna("")
        raw.notes.append("no order_id column mapped: order_id derived as customer_id|order_ts")
    return df
