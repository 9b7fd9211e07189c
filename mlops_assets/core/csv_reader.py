"""Reading one delimited text file so that no line is lost and no line stops the read.

A file is first checked as a whole: it exists with bytes in it, decompresses completely, is text
in the configured encoding, has a header and at least one data line, and is split by the
configured delimiter. A file that fails one of these has a *fault*, a sentence naming the
problem, and the bronze gate `files_readable` blocks with it.

A readable file goes through pyarrow's multithreaded reader. Only when pyarrow refuses the file
(a ragged line, bytes that are not text, a field too large for its blocks) is it read again line
by line with Python's csv module, and each record that cannot become a row is kept as a *bad
line*: its record number, its raw text and why (`read_fault`), so that it ends in quarantine.
Records are numbered as both readers number them: data records after the header, blank lines
skipped; a quoted field may span lines.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import lzma
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_assets.core.schemas import TEXT

NULLS = ["", "NA", "N/A", "NaN", "nan", "null", "NULL"]
MAX_FIELD_CHARS = 100_000  # a longer field is not an order line's value: the line is quarantined
RAW_KEPT = 2_000  # characters of a bad line's raw text kept in quarantine
OTHER_DELIMITERS = [",", ";", "\t", "|"]


@dataclass
class FileRead:
    frame: pd.DataFrame  # the good records, wanted columns only
    rows: np.ndarray  # record number (1-based, after the header) of each good record
    bad: pd.DataFrame = field(default_factory=lambda: bad_frame([], [], []))
    fault: str | None = None  # why the file as a whole cannot be read; None when it can


def bad_frame(rows: list[int], raw: list[str], why: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source_row": np.asarray(rows, dtype="int64"),
            "raw_line": pd.Series(raw, dtype=TEXT),
            "read_fault": pd.Series(why, dtype=TEXT),
        }
    )


def faulty(problem: str) -> FileRead:
    return FileRead(pd.DataFrame(), np.zeros(0, dtype="int64"), fault=problem)


def decompressed(path: Path) -> bytes | str:
    """The file's bytes, decompressed by its suffix; a sentence when that is impossible."""
    data = path.read_bytes()
    if not data:
        return "is empty (0 bytes)"
    suffix = path.suffix.lower()
    opener = {".gz": gzip.decompress, ".bz2": bz2.decompress, ".xz": lzma.decompress}.get(suffix)
    if opener is None:
        return data
    try:
        data = opener(data)
    except gzip.BadGzipFile:
        return "is not gzip data though its name ends in .gz"
    except (OSError, EOFError, lzma.LZMAError, ValueError) as exc:
        return f"is not a complete {suffix[1:]} stream ({exc}): cut short or corrupted in transfer"
    return data if data else f"is an empty {suffix[1:]} stream (no bytes inside)"


def without_bom(data: bytes) -> bytes:
    return data[3:] if data.startswith(b"\xef\xbb\xbf") else data


def encoding_fault(data: bytes, encoding: str) -> str | None:
    """A sentence when the bytes are plainly not text in `encoding` (UTF-16, binary)."""
    head = data[:65536]
    if "16" in encoding or "32" in encoding:
        return None
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or head.count(b"\x00") > len(head) // 4:
        return f"is UTF-16 text, not {encoding}: set read.encoding in sources.yaml"
    if b"\x00" in head:
        return "is binary data (it holds NUL bytes), not delimited text"
    return None


def split_header(first: str, sep: str, quote: str) -> list[str]:
    return next(csv.reader([first], delimiter=sep, quotechar=quote), [])


def header_fault(header: list[str], first: str, sep: str, quote: str, wanted: set[str]) -> str | None:
    """The configured delimiter leaves the header one column while another splits it into the
    mapped columns: a wrong delimiter."""
    if len(header) > 1 or not wanted:
        return None
    for other in OTHER_DELIMITERS:
        if other != sep and len(set(split_header(first, other, quote)) & wanted) >= 2:
            shown = {"\t": "\\t"}.get(other, other)
            return (
                f"looks '{shown}'-delimited: its header splits into the mapped columns on "
                f"'{shown}', not on the configured '{sep}' (set read.sep in sources.yaml)"
            )
    return None


def readable_bytes(path: Path, encoding: str) -> bytes | FileRead:
    """The file's text bytes (decompressed, without a BOM), or a FileRead with its fault."""
    data = decompressed(path)
    if isinstance(data, str):
        return faulty(data)
    problem = encoding_fault(data, encoding)
    return faulty(problem) if problem else without_bom(data)


def first_line(data: bytes, encoding: str) -> tuple[str, int] | None:
    """The first non-blank line (decoded) and the byte offset after it; None when all blank."""
    at = 0
    while at < len(data):
        stop = data.find(b"\n", at)
        stop = len(data) if stop < 0 else stop + 1
        line = data[at:stop].decode(encoding, errors="surrogateescape").strip("\r\n")
        if line.strip():
            return line, stop
        at = stop
    return None


def read_delimited(
    path: Path,
    opts: dict[str, Any],
    wanted: set[str],
    string_cols: set[str],
    max_field: int = MAX_FIELD_CHARS,
) -> FileRead:
    encoding = opts.get("encoding", "utf-8")
    data = readable_bytes(path, encoding)
    if isinstance(data, FileRead):
        return data
    found = checked_header(data, opts, wanted)
    if isinstance(found, FileRead):
        return found
    header, _ = found
    return parse(data, header, opts, wanted, string_cols, max_field)


def checked_header(data: bytes, opts: dict[str, Any], wanted: set[str]) -> tuple[list[str], int] | FileRead:
    """(the header's fields, the byte offset after it), or a FileRead with the fault: no header,
    a header split by another delimiter, no data line after it."""
    sep = opts.get("sep", opts.get("delimiter", ","))
    quote = opts.get("quotechar", '"')
    encoding = opts.get("encoding", "utf-8")
    found = first_line(data, encoding)
    if found is None:
        return faulty("has no header line (only blank lines)")
    first, after = found
    header = split_header(first, sep, quote)
    problem = header_fault(header, first, sep, quote, wanted)
    if problem:
        return faulty(problem)
    if not data[after:].strip():
        return faulty(f"has a header ({', '.join(header[:8])}) but no data lines")
    return header, after


def parse(
    data: bytes,
    header: list[str],
    opts: dict[str, Any],
    wanted: set[str],
    string_cols: set[str],
    max_field: int,
) -> FileRead:
    """The records of `data` (text that starts with its header line): pyarrow's reader, or line
    by line when pyarrow refuses them."""
    sep = opts.get("sep", opts.get("delimiter", ","))
    quote = opts.get("quotechar", '"')
    encoding = opts.get("encoding", "utf-8")
    use = [c for c in header if c in wanted]
    try:
        frame = _arrow(data, encoding, opts, use, string_cols, sep, quote)
    except Exception:  # noqa: BLE001  pyarrow refuses the file: read it line by line instead
        text = data.decode(encoding, errors="surrogateescape")
        return _by_line(text, use, sep, quote, opts, max_field)
    if _oversized(frame, max_field):  # the line reader keeps such lines' raw text
        return _by_line(data.decode(encoding, errors="surrogateescape"), use, sep, quote, opts, max_field)
    repeats = _header_repeats(frame, use)
    rows = np.arange(1, len(frame) + 1)
    if not repeats.any():
        return FileRead(frame, rows)
    raw = [sep.join(header)] * int(repeats.sum())
    bad = bad_frame(rows[repeats].tolist(), raw, ["repeats the header line"] * int(repeats.sum()))
    return FileRead(frame[~repeats].reset_index(drop=True), rows[~repeats], bad)


def _arrow(
    data: bytes, encoding: str, opts: dict, use: list[str], string_cols: set[str], sep: str, quote: str
) -> pd.DataFrame:
    """pyarrow's multithreaded reader; it raises on any line it cannot read."""
    import pyarrow as pa
    from pyarrow import csv as pcsv

    parse = pcsv.ParseOptions(delimiter=sep, quote_char=quote, escape_char=opts.get("escapechar", False))
    convert = pcsv.ConvertOptions(
        include_columns=use,
        column_types={c: "string" for c in use if c in string_cols},
        strings_can_be_null=True,
        null_values=[*NULLS, *opts.get("na_values", [])],
    )
    read = pcsv.ReadOptions(encoding=encoding)
    table = pcsv.read_csv(io.BytesIO(data), read_options=read, parse_options=parse, convert_options=convert)
    return table.to_pandas(types_mapper={pa.string(): TEXT}.get)


def _oversized(frame: pd.DataFrame, max_field: int) -> bool:
    import pyarrow.compute as pc

    for col in frame.columns:
        if frame[col].dtype == TEXT and len(frame):
            longest = pc.max(pc.utf8_length(frame[col].array._pa_array)).as_py()
            if longest is not None and longest > max_field:
                return True
    return False


def _header_repeats(frame: pd.DataFrame, use: list[str]) -> np.ndarray:
    """Records equal to the header in every wanted column (a concatenated export)."""
    if not use or not len(frame):
        return np.zeros(len(frame), dtype=bool)
    same = np.ones(len(frame), dtype=bool)
    for col in use:
        if frame[col].dtype != TEXT:  # a column holding its own name would have been read as text
            return np.zeros(len(frame), dtype=bool)
        same &= frame[col].eq(col).fillna(False).to_numpy(dtype=bool)
    return same


def _by_line(text: str, use: list[str], sep: str, quote: str, opts: dict, max_field: int) -> FileRead:
    nulls = {*NULLS, *opts.get("na_values", [])}
    limit = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)
    try:
        records = _records(text, sep, quote, opts.get("escapechar"))
    finally:
        csv.field_size_limit(limit)
    return _classified(records, use, nulls, max_field, cut=not text.endswith(("\n", "\r")))


def _classified(records: list, use: list[str], nulls: set[str], max_field: int, cut: bool) -> FileRead:
    """Records (fields, raw text; the header first) as good rows of the `use` columns and bad
    lines; `cut`: the file ends without a line end, so a short last line was cut."""
    header = records[0][0]
    keep = [header.index(c) for c in use]
    good, rows, bad_rows, bad_raw, bad_why = [], [], [], [], []
    for number, (fields, raw) in enumerate(records[1:], start=1):
        why = _fault(fields, raw, header, max_field, keep)
        if why and cut and number == len(records) - 1 and "fields" in why:
            why += " (the file's last line, without a line end: cut short)"
        if why:
            bad_rows.append(number)
            bad_raw.append(_shown(raw))
            bad_why.append(why)
            continue
        rows.append(number)
        good.append([None if fields[i] in nulls else fields[i] for i in keep])
    frame = pd.DataFrame(good, columns=use, dtype=object).astype(TEXT) if good else pd.DataFrame(columns=use)
    return FileRead(frame, np.asarray(rows, dtype="int64"), bad_frame(bad_rows, bad_raw, bad_why))


def _records(text: str, sep: str, quote: str, escape: str | None) -> list[tuple[list[str], str]]:
    """(fields, raw text) per non-blank record, the header first."""
    physical = io.StringIO(text, newline="").readlines()  # the lines csv counts in line_num
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, quotechar=quote, escapechar=escape)
    out = []
    start = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error:  # an unterminated quote to the end of the file: the rest is one bad record
            out.append((["<unterminated quote>"], "".join(physical[start:])))
            break
        end = reader.line_num
        raw = "".join(physical[start:end]).rstrip("\r\n")
        start = end
        if fields and any(f.strip() for f in fields):
            out.append((fields, raw))
    return out


def _fault(fields: list[str], raw: str, header: list[str], max_field: int, keep: list[int]) -> str | None:
    """Why a record cannot be a row, or None. Only the mapped fields (`keep`) are held to the
    field length: an unmapped field of any size is not read, so it never quarantines its line."""
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in raw):
        return "holds bytes that are not text in the file's encoding"
    if fields == header:
        return "repeats the header line"
    if len(fields) != len(header):
        return f"has {len(fields)} field{'s' * (len(fields) != 1)} where the header has {len(header)}"
    longest = max((len(fields[i]) for i in keep), default=0)
    if longest > max_field:
        return f"has a field of {longest:,} characters (more than {max_field:,})"
    return None


def _shown(raw: str) -> str:
    """The raw line as text: undecodable bytes as \\xNN escapes, long lines cut."""
    shown = raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return shown if len(shown) <= RAW_KEPT else f"{shown[:RAW_KEPT]}... ({len(shown):,} characters)"


def read_split_lines(path: Path, sep: str, encoding: str, wanted: set[str], max_field: int) -> FileRead:
    """A file split by a regular expression (`sep: '\\s+'`), line by line: a line with another
    number of fields than the header is a bad line, as in `_by_line`."""
    import re

    data = readable_bytes(path, encoding)
    if isinstance(data, FileRead):
        return data
    text = data.decode(encoding, errors="surrogateescape")
    split = re.compile(sep)
    records = [(split.split(line.strip()), line) for line in text.splitlines() if line.strip()]
    if len(records) < 2:
        return faulty("has a header but no data lines" if records else "has no header line")
    use = [c for c in records[0][0] if c in wanted]
    return _classified(records, use, set(NULLS), max_field, cut=False)
