"""Files already read: a raw file whose bytes have not changed is not read again.

Each file of the transactions source is read once per content (the SHA-256 of its bytes) and per
way of reading it (sources.yaml's read options and column mapping, the window's start, this
module's VERSION): its typed lines are kept as Parquet, one file per month of their partition
day, beside what the bronze gates count of it, under `.ingest-cache/` in the data directory.
The window's end is not part of the key: it moves every day (an open window ends today), and
it decides a line's day only for lines at or after it. An entry records the end it was read
with and the file's latest timestamp; it serves any end past that timestamp (the file's lines
are then all inside both windows, or attributed to in-window neighbours the same way), and a
file with lines at or after the end is read again (the newest file of a growing log, usually). A later
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
        stamps = [pd.Timestamp(f["max"]) for f in meta["months"].values() if f["max"]]
        if END not in meta or (stamps and max(stamps) >= min(pd.Timestamp(end), pd.Timestamp(meta[END]))):
            return None  # its lines reach one of the two ends: their days may differ
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
