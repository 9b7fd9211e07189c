# ruff: noqa: E501  (the corpus is a table: one kind per line reads best)
"""A generator of the broken files real retail exports produce, each with the outcome the
platform owes it (issue 15): blocked by name, some lines quarantined with a reason, or accepted
as the same data as the clean file.

Each kind turns the clean file (a header and lines of text) into the bytes of a broken one.
"""

from __future__ import annotations

import bz2
import gzip
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

Lines = list[str]


@dataclass(frozen=True)
class Kind:
    name: str
    make: Callable[[str, Lines], bytes]
    outcome: str  # "blocked" | "quarantined" | "accepted"
    # blocked: a phrase of the gate's sentence; quarantined: the rule of the quarantined lines
    detail: str = ""
    lines: int | Callable[[Lines], int] = 0  # quarantined: how many lines (of the clean lines)
    suffix: str = ".csv"  # the broken file's name ends so (compression)
    gate: str = "files_readable"  # blocked: the gate that blocks


def text(header: str, lines: Lines, end: str = "\n") -> bytes:
    return (end.join([header, *lines]) + end).encode()


def fields(line: str) -> list[str]:
    return line.split(",")


def at(lines: Lines, i: int, new: str) -> Lines:
    return [*lines[:i], new, *lines[i + 1 :]]


def inserted(lines: Lines, i: int, *new: str) -> Lines:
    return [*lines[:i], *new, *lines[i:]]


def replace_field(line: str, col: int, value: str) -> str:
    parts = fields(line)
    parts[col] = value
    return ",".join(parts)


def _cut_gzip(header: str, lines: Lines) -> bytes:
    whole = gzip.compress(text(header, lines))
    return whole[: len(whole) * 2 // 3]


def _shuffled_columns(header: str, lines: Lines) -> bytes:
    order = [6, 0, 5, 1, 4, 2, 3]
    pick = lambda line: ",".join(fields(line)[i] for i in order)  # noqa: E731
    return text(pick(header), [pick(line) for line in lines])


def _padded(header: str, lines: Lines) -> bytes:
    pad = lambda line: ",".join(f"  {f} " for f in fields(line))  # noqa: E731
    return text(header, [pad(line) for line in lines])


def _quoted(header: str, lines: Lines) -> bytes:
    quote = lambda line: ",".join(f'"{f}"' for f in fields(line))  # noqa: E731
    return text(quote(header), [quote(line) for line in lines])


def _semicolons(header: str, lines: Lines) -> bytes:
    return text(header.replace(",", ";"), [line.replace(",", ";") for line in lines])


def _tabs(header: str, lines: Lines) -> bytes:
    return text(header.replace(",", "\t"), [line.replace(",", "\t") for line in lines])


def _guests_blank(header: str, lines: Lines) -> bytes:
    return text(header, [replace_field(line, 2, " ") if fields(line)[2] == "" else line for line in lines])


def _guests_null(header: str, lines: Lines) -> bytes:
    return text(header, [replace_field(line, 2, "NULL") if fields(line)[2] == "" else line for line in lines])


def _qty_decimal(header: str, lines: Lines) -> bytes:
    return text(header, [replace_field(line, 5, fields(line)[5] + ".0") for line in lines])


def _extra_columns(header: str, lines: Lines) -> bytes:
    return text(header + ",channel,note", [line + ',web,"a, b"' for line in lines])


def _large_unmapped_field(header: str, lines: Lines) -> bytes:
    """A 3 MB field in a column sources.yaml does not map: nothing the line carries is used."""
    notes = ["" for _ in lines]
    notes[21] = '"' + "N" * 3_000_000 + '"'
    return text(header + ",note", [f"{line},{note}" for line, note in zip(lines, notes, strict=True)])


def _dates(fmt: str, every: int = 1) -> Callable[[str, Lines], bytes]:
    """The timestamps rewritten in `fmt` (on every `every`-th line; the others stay ISO)."""

    def make(header: str, lines: Lines) -> bytes:
        out = []
        for i, line in enumerate(lines):
            ts = fields(line)[1]
            out.append(replace_field(line, 1, pd.Timestamp(ts).strftime(fmt)) if i % every == 0 else line)
        return text(header, out)

    return make


def _mixed_orders(header: str, lines: Lines) -> bytes:
    """Day-first with a day above 12 on one line, month-first with one on another."""
    rows = [
        replace_field(line, 1, pd.Timestamp(fields(line)[1]).strftime("%d/%m/%Y %H:%M:%S")) for line in lines
    ]
    rows[3] = replace_field(rows[3], 1, "25/01/2023 10:00:00")
    rows[4] = replace_field(rows[4], 1, "01/25/2023 10:00:00")
    return text(header, rows)


def _signs_flipped(header: str, lines: Lines) -> bytes:
    flip = lambda q: q[1:] if q.startswith("-") else "-" + q  # noqa: E731
    return text(header, [replace_field(line, 5, flip(fields(line)[5])) for line in lines])


def _day_resent(header: str, lines: Lines) -> bytes:
    """Ten lines of the first day re-sent dated two days later (same order ids)."""
    again = [replace_field(x, 1, "2023-01-03" + fields(x)[1][10:]) for x in lines[:10]]
    return text(header, [*lines, *again])


def resent_lines(lines: Lines) -> int:
    assert all(fields(x)[1].startswith("2023-01-01") for x in lines[:10])
    return 10


def _bytes_in(i: int, junk: bytes) -> Callable[[str, Lines], bytes]:
    def make(header: str, lines: Lines) -> bytes:
        raw = text(header, lines).split(b"\n")
        raw[i + 1] = raw[i + 1][:12] + junk + raw[i + 1][12:]
        return b"\n".join(raw)

    return make


KINDS: list[Kind] = [
    # --- lines the reader cannot make rows of: quarantined, raw text kept
    Kind("extra_field", lambda h, ls: text(h, at(ls, 5, ls[5] + ",EXTRA")), "quarantined", "unreadable_line", 1),
    Kind("missing_field", lambda h, ls: text(h, at(ls, 7, ls[7].rsplit(",", 1)[0])), "quarantined", "unreadable_line", 1),
    Kind("three_ragged_lines", lambda h, ls: text(h, at(at(at(ls, 3, ls[3] + ",x"), 9, ls[9] + ",y,z"), 20, "a,b")),
         "quarantined", "unreadable_line", 3),
    Kind("last_line_cut", lambda h, ls: text(h, ls)[: -len(ls[-1]) // 2 - 1], "quarantined", "unreadable_line", 1),
    Kind("trailer_line", lambda h, ls: text(h, [*ls, f"TRAILER,{len(ls)}"]), "quarantined", "unreadable_line", 1),
    Kind("header_repeated", lambda h, ls: text(h, inserted(ls, 40, h)), "quarantined", "unreadable_line", 1),
    Kind("two_files_concatenated", lambda h, ls: text(h, inserted(ls, 60, h, f"TRAILER,{60}")),
         "quarantined", "unreadable_line", 2),
    Kind("invalid_utf8_bytes", _bytes_in(11, b"\xff\xfe"), "quarantined", "unreadable_line", 1),
    Kind("latin1_byte", _bytes_in(13, b"\xe9"), "quarantined", "unreadable_line", 1),
    Kind("long_quoted_field", lambda h, ls: text(h, at(ls, 15, replace_field(ls[15], 2, '"' + "C" * 300_000 + '"'))),
         "quarantined", "unreadable_line", 1),
    Kind("field_larger_than_a_read_block", lambda h, ls: text(h, at(ls, 16, replace_field(ls[16], 2, '"' + "C" * 2_000_000 + '"'))),
         "quarantined", "unreadable_line", 1),
    Kind("unterminated_quote_at_end", lambda h, ls: text(h, at(ls, len(ls) - 1, replace_field(ls[-1], 0, '"SO9'))),
         "quarantined", "unreadable_line", 1),
    Kind("only_delimiters_line", lambda h, ls: text(h, inserted(ls, 30, ",,,,,,")), "quarantined", "unparseable_order_ts", 1),
    Kind("word_for_quantity", lambda h, ls: text(h, at(ls, 17, replace_field(ls[17], 5, "two"))),
         "quarantined", "unparseable_value", 1),
    Kind("garbage_timestamp", lambda h, ls: text(h, at(ls, 19, replace_field(ls[19], 1, "2023-13-45 99:00:00"))),
         "quarantined", "unparseable_order_ts", 1),
    Kind("markup_line", lambda h, ls: text(h, inserted(ls, 50, "<html><body>Error 502</body></html>")),
         "quarantined", "unreadable_line", 1),
    Kind("comment_line", lambda h, ls: text(h, inserted(ls, 25, "# exported by POS v2, page 2")),
         "quarantined", "unreadable_line", 1),
    Kind("day_resent_under_another_date", _day_resent, "quarantined", "replayed_order", resent_lines),
    # --- files that cannot be read at all: blocked, the file and problem named
    Kind("zero_bytes", lambda h, ls: b"", "blocked", "is empty (0 bytes)"),
    Kind("header_only", lambda h, ls: text(h, []), "blocked", "but no data lines"),
    Kind("blank_lines_only", lambda h, ls: b"\n\n  \n", "blocked", "has no header line"),
    Kind("truncated_gzip", _cut_gzip, "blocked", "not a complete gz stream", suffix=".csv.gz"),
    Kind("not_gzip_at_all", lambda h, ls: text(h, ls), "blocked", "is not gzip data", suffix=".csv.gz"),
    Kind("empty_gzip", lambda h, ls: gzip.compress(b""), "blocked", "empty gz stream", suffix=".csv.gz"),
    Kind("truncated_bz2", lambda h, ls: bz2.compress(text(h, ls))[:200], "blocked", "not a complete bz2", suffix=".csv.bz2"),
    Kind("utf16_file", lambda h, ls: text(h, ls).decode().encode("utf-16"), "blocked", "UTF-16"),
    Kind("semicolon_delimited", _semicolons, "blocked", "looks ';'-delimited"),
    Kind("tab_delimited", _tabs, "blocked", "looks '\\t'-delimited"),
    Kind("ambiguous_day_first_dates", _dates("%d/%m/%Y %H:%M:%S"), "blocked", "day and month order cannot be told"),
    Kind("ambiguous_month_first_dates", _dates("%m/%d/%Y %H:%M"), "blocked", "day and month order cannot be told"),
    Kind("mixed_day_and_month_first", _mixed_orders, "blocked", "mixes day-first"),
    Kind("every_sign_flipped", _signs_flipped, "blocked", "the signs look flipped", gate="returns_share_plausible"),
    Kind("binary_file", lambda h, ls: bytes(range(256)) * 64, "blocked", "is binary data"),
    # --- the same data written differently: accepted, silver unchanged
    Kind("padded_fields", _padded, "accepted"),
    Kind("guest_as_space", _guests_blank, "accepted"),
    Kind("guest_as_null_word", _guests_null, "accepted"),
    Kind("utf8_bom", lambda h, ls: b"\xef\xbb\xbf" + text(h, ls), "accepted"),
    Kind("crlf_line_ends", lambda h, ls: text(h, ls, "\r\n"), "accepted"),
    Kind("every_field_quoted", _quoted, "accepted"),
    Kind("columns_reordered", _shuffled_columns, "accepted"),
    Kind("extra_columns", _extra_columns, "accepted"),
    Kind("large_unmapped_field", _large_unmapped_field, "accepted"),
    Kind("gzip_compressed", lambda h, ls: gzip.compress(text(h, ls)), "accepted", suffix=".csv.gz"),
    Kind("bz2_compressed", lambda h, ls: bz2.compress(text(h, ls)), "accepted", suffix=".csv.bz2"),
    Kind("no_final_newline", lambda h, ls: text(h, ls)[:-1], "accepted"),
    Kind("blank_lines_between", lambda h, ls: text(h, [x for line in ls for x in (line, "")]), "accepted"),
    Kind("trailing_blank_lines", lambda h, ls: text(h, [*ls, "", "", ""]), "accepted"),
    Kind("leading_blank_line", lambda h, ls: b"\n" + text(h, ls), "accepted"),
    Kind("quantity_as_decimal", _qty_decimal, "accepted"),
]  # fmt: skip
