"""Reading a large delimited file in pieces, so that memory follows the piece, not the file.

A file larger than STREAM_BYTES on disk is decompressed as a stream and cut into pieces of about
PIECE_BYTES at line ends outside quotes (a quoted field may span lines: a line end ends a
record only after an even number of quote characters, which holds for doubled quotes too).
Each piece, behind the file's header line, is read as a whole file is
(csv_reader.parse: pyarrow, or line by line where pyarrow refuses the piece), and its records
are numbered on from the pieces before it, so every line keeps the record number a whole-file
read gives it.

The whole-file checks (compression, encoding, header) run on the file's first bytes; a
compressed stream found cut short at its end is a fault of the file, and the reader's caller
discards what it kept of the file's earlier pieces.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from mlops_assets.core import csv_reader
from mlops_assets.core.csv_reader import FileRead

STREAM_BYTES = 256 * 2**20  # files above this size on disk are read in pieces
PIECE_BYTES = 64 * 2**20  # about this much text per piece
HEAD_BYTES = 65_536  # the first piece holds at least what csv_reader.encoding_fault looks at
SINGLE_BYTE_SAFE = ("utf-8", "utf8", "ascii", "latin-1", "latin1", "iso-8859-1", "cp1252")


def streamable(path: Path, opts: dict[str, Any]) -> bool:
    """Large, and in an encoding whose quote and line-end bytes mean only that."""
    encoding = str(opts.get("encoding", "utf-8")).lower().replace("_", "-")
    try:
        size = path.stat().st_size
    except OSError:
        return False
    return size > STREAM_BYTES and encoding in SINGLE_BYTE_SAFE


def _open(path: Path) -> BinaryIO:
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(path.suffix.lower(), open)
    return opener(path, "rb")


def cut(buffer: bytes, quote: bytes) -> int:
    """The end (after its line end) of the last whole record in `buffer`, which starts at a
    record's start; 0 when no record ends in it."""
    at = len(buffer)
    while True:
        at = buffer.rfind(b"\n", 0, at)
        if at < 0:
            return 0
        if buffer.count(quote, 0, at) % 2 == 0:
            return at + 1


def raw_pieces(path: Path, quote: str, piece_bytes: int | None = None) -> Iterator[bytes]:
    """The file's decompressed bytes in pieces that end at a record's end (the last one where
    the file ends). Raises what decompression raises."""
    mark = quote.encode()
    piece_bytes = piece_bytes or PIECE_BYTES
    rest = b""
    with _open(path) as stream:
        first = True
        while True:
            block = stream.read(max(piece_bytes, HEAD_BYTES) if first else piece_bytes)
            first = False
            if not block:
                break
            buffer = rest + block
            end = cut(buffer, mark)
            if end == 0:  # one record longer than a piece: read on
                rest = buffer
                continue
            yield buffer[:end]
            rest = buffer[end:]
    if rest:
        yield rest


def read_pieces(
    path: Path,
    opts: dict[str, Any],
    wanted: set[str],
    string_cols: set[str],
    max_field: int = csv_reader.MAX_FIELD_CHARS,
    piece_bytes: int | None = None,
) -> Iterator[FileRead]:
    """The file read a piece at a time, each record numbered as a whole-file read numbers it. A
    FileRead with a fault (and nothing else) ends the stream when the file cannot be read."""
    encoding = opts.get("encoding", "utf-8")
    quote = opts.get("quotechar", '"')
    header: list[str] | None = None
    head = b""
    done = 0  # records of the pieces before
    try:
        for number, piece in enumerate(raw_pieces(path, quote, piece_bytes)):
            if number == 0:
                problem = csv_reader.encoding_fault(piece, encoding)
                if problem:
                    yield csv_reader.faulty(problem)
                    return
                piece = csv_reader.without_bom(piece)
                found = csv_reader.checked_header(piece, opts, wanted)
                if isinstance(found, FileRead):
                    yield found
                    return
                header, after = found
                head, piece = piece[:after], piece[after:]
            got = csv_reader.parse(head + piece, header, opts, wanted, string_cols, max_field)
            got.rows = got.rows + done
            got.bad["source_row"] = got.bad["source_row"] + done
            done += len(got.frame) + len(got.bad)
            yield got
        if header is None:  # not one byte came out
            kind = path.suffix.lower()[1:]
            empty = path.stat().st_size == 0 or kind not in ("gz", "bz2", "xz")
            yield csv_reader.faulty(
                "is empty (0 bytes)" if empty else f"is an empty {kind} stream (no bytes inside)"
            )
    except gzip.BadGzipFile:
        yield csv_reader.faulty("is not gzip data though its name ends in .gz")
    except (OSError, EOFError, lzma.LZMAError, ValueError) as exc:
        kind = path.suffix.lower()[1:]
        yield csv_reader.faulty(
            f"is not a complete {kind} stream ({exc}): cut short or corrupted in transfer"
        )
