"""Files already read: a raw file whose bytes have not changed is not read again.

Each file of the transactions source is read once per content (the SHA-256 of its bytes) and per
way of reading it (sources.yaml's read options and column mapping, the window's start, this
module's VERSION): its typed lines are kept as Parquet, one file per month of their partition
day, beside what the bronze gates count of it, under `.ingest-cache/` in the data directory.
The window's end is not part of the key: it moves every day (an open window ends today), and
it decides a line's day only for the lines it moves in or out of the window. An entry records
the end it was read with, the days of its lines at or after that end (a stray future date, the
day not complete yet) and its latest timestamp before it; it serves another end when no line
lies between the two ends (every line is then inside, or outside, both windows, and is given
the same day), and the file is read again otherwise (the newest file of a growing log). A later
run (the daily schedule re-runs the month so far; a backfill re-runs its months) takes an
unchanged file's months from there, and reads only new or changed files. The file's bytes are
still hashed on every run: that is how a change is noticed, at disk speed.

An entry is written in a folder of its own and renamed into place, so a run that stops half-way
leaves no half entry. Entries no current file uses are removed after a day.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path

import pandas as pd

VERSION = "1"  # bump when reading or typing changes what a file's lines are
FOLDER = ".ingest-cache"
END = "window_end"  # meta.json: the window end (exclusive) the entry was read with
LATE = "days_at_or_after_end"  # meta.json: the days of its lines at or after END (None: too many)
LATEST = "latest_before_end"  # meta.json: its latest timestamp before END
UNUSED_FOR = 24 * 3600  # seconds an unused entry is kept (another run may be about to use it)


def file_digest(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").digest()


def combined(digests: list[bytes]) -> str:
    """The source's content hash, from its files' digests (as ingestion.content_hash)."""
    digest = hashlib.sha256()
    for d in digests:
        digest.update(d)
    return digest.hexdigest()[:16]


def reading_digest(**how) -> str:
    """What, besides a file's bytes, decides its typed lines."""
    text = json.dumps({"version": VERSION, **how}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


MAX_LATE_DAYS = 1000  # an entry lists at most this many days past its end (else: read again)


def end_facts(stamps: pd.Series, end: pd.Timestamp) -> dict:
    """What an entry keeps about its lines and the window end it was read with (a midnight)."""
    late = stamps[stamps >= end].dt.floor("D").dropna().unique()
    inside = stamps[stamps < end].max()
    return {
        LATE: sorted(str(pd.Timestamp(d)) for d in late) if len(late) <= MAX_LATE_DAYS else None,
        LATEST: None if pd.isna(inside) else str(inside),
    }


def merged_end_facts(a: dict, b: dict) -> dict:
    """The end facts of two pieces of one file, as one."""
    late = None if a[LATE] is None or b[LATE] is None else sorted({*a[LATE], *b[LATE]})
    inside = [pd.Timestamp(x) for x in (a[LATEST], b[LATEST]) if x is not None]
    return {
        LATE: late if late is None or len(late) <= MAX_LATE_DAYS else None,
        LATEST: str(max(inside)) if inside else None,
    }


def serves(meta: dict, end: pd.Timestamp) -> bool:
    """Whether an entry read with window end meta[END] types its lines as `end` would: no line
    lies in between (ends are midnights, so a line's day decides)."""
    if END not in meta or LATE not in meta:
        return False
    read_with = pd.Timestamp(meta[END])
    if end >= read_with:
        return meta[LATE] is not None and not any(read_with <= pd.Timestamp(d) < end for d in meta[LATE])
    return meta[LATEST] is None or pd.Timestamp(meta[LATEST]) < end


class LineCache:
    def __init__(self, data_dir: Path, reading: str):
        self.root = Path(data_dir) / FOLDER
        self.reading = reading
        self.used: set[Path] = set()

    def entry(self, digest: bytes) -> Path:
        return self.root / f"{self.reading}-{digest.hex()[:32]}"

    def load(self, digest: bytes, end: object) -> dict | None:
        """The entry's facts (meta.json) with its month files, or None when the file is new or
        its entry was read with a window end its lines reach (see the module's docstring)."""
        folder = self.entry(digest)
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (OSError, ValueError):
            return None
        if not all((folder / f"{m}.parquet").exists() for m in meta["months"]):
            return None
        if not serves(meta, pd.Timestamp(end)):
            return None  # a line between the two ends: its day may differ
        self.used.add(folder)
        os.utime(folder)
        return meta

    def folder_for(self, digest: bytes) -> Path:
        """A fresh folder to write a new entry in (then `store`)."""
        return self.root / f".tmp-{uuid.uuid4().hex}"

    def store(self, digest: bytes, folder: Path, meta: dict, end: object) -> Path:
        """Move a written entry into place (read with window end `end`, replacing an entry read
        with another end); its month files then live there."""
        (folder / "meta.json").write_text(json.dumps({**meta, END: str(end)}, default=str))
        target = self.entry(digest)
        if target.exists():  # read with an end its lines reached: set aside, then removed
            stale = self.root / f".tmp-{uuid.uuid4().hex}"
            with contextlib.suppress(OSError):  # another run set it aside first
                os.replace(target, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(folder, target)
        except OSError:  # another run stored the same file meanwhile: theirs is as good
            shutil.rmtree(folder, ignore_errors=True)
        self.used.add(target)
        return target

    def prune(self) -> None:
        """Remove entries this run did not use and nobody used for a day, and stray folders."""
        if not self.root.exists():
            return
        now = time.time()
        for folder in self.root.iterdir():
            if folder in self.used:
                continue
            try:
                if now - folder.stat().st_mtime > UNUSED_FOR:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                continue
