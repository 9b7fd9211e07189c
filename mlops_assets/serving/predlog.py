"""The prediction log: every request mlops-serve answered, with the champion's and (in shadow
or canary mode) the challenger's answer, as JSON lines under `<data dir>/serving/predictions/`.

Requests only append a record to an in-memory queue; a background thread writes the queue out
every `flush_seconds` in one write per batch, to an hourly file per server process, so the
disk is never on a request's path and two servers never write to one file. A reader skips a
last line that is still being written (no newline yet) and takes it at its next read.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from pathlib import Path

import pandas as pd

COLUMNS = {  # column: dtype of the served_predictions table
    "ts": "datetime64[ns, UTC]",
    "request_id": "string",
    "route": "string",
    "entity_id": "string",
    "status": "int64",
    "mode": "string",
    "served_by": "string",
    "latency_ms": "float64",
    "versions": "string",  # JSON: model -> {champion, challenger} versions at the time
    "inputs": "string",  # JSON: the feature values the models scored
    "champion_output": "string",  # JSON
    "challenger_output": "string",  # JSON, or null when no challenger scored
    "error": "string",
}
JSON_COLUMNS = ("versions", "inputs", "champion_output", "challenger_output")


class PredictionLog:
    """Append-only, batched, one writer thread per server process."""

    def __init__(self, folder: Path, flush_seconds: float = 1.0):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.flush_seconds = flush_seconds
        self._queue: deque[dict] = deque()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one flush at a time (the thread's, or close()'s)
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def append(self, record: dict) -> None:
        self._queue.append(record)  # deque.append is atomic: no lock on the request path

    def _file(self) -> Path:
        return self.folder / f"predictions-{time.strftime('%Y%m%dT%H', time.gmtime())}-{os.getpid()}.jsonl"

    def flush(self) -> int:
        with self._lock:
            batch = []
            while self._queue:
                batch.append(self._queue.popleft())
            if not batch:
                return 0
            text = "".join(json.dumps(r, default=str, separators=(",", ":")) + "\n" for r in batch)
            with open(self._file(), "a", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            self.written += len(batch)
            return len(batch)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.flush()


def read_log(folder: Path) -> tuple[pd.DataFrame, dict[str, int]]:
    """Every complete record under `folder` as the served_predictions table, and counts of
    what was read: files, records, and lines skipped (unfinished last lines, or lines that are
    not a JSON record, which are counted and named, never silently dropped)."""
    folder = Path(folder)
    rows: list[dict] = []
    stats = {"files": 0, "records": 0, "unfinished_lines": 0, "unreadable_lines": 0}
    for path in sorted(folder.glob("predictions-*.jsonl")) if folder.is_dir() else []:
        stats["files"] += 1
        text = path.read_text(encoding="utf-8", errors="replace")
        lines = text.split("\n")
        if lines and lines[-1]:  # no newline yet: the writer is in the middle of it
            stats["unfinished_lines"] += 1
        for line in lines[:-1]:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if not _valid(record):  # not JSON, or not a record of this log (edited, foreign)
                stats["unreadable_lines"] += 1
                continue
            rows.append(record)
    stats["records"] = len(rows)
    return log_frame(rows), stats


def _valid(record) -> bool:
    """A record the table can hold: a mapping with a parseable time and an integer status."""
    if not isinstance(record, dict) or not isinstance(record.get("status"), int):
        return False
    try:
        pd.Timestamp(record.get("ts"))
    except (TypeError, ValueError):
        return False
    return record.get("ts") is not None


def log_frame(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    for col in JSON_COLUMNS:  # nested answers stay JSON text: SQL reads them with json functions
        table[col] = [None if v is None else json.dumps(v, sort_keys=True) for v in table[col]]
    table["ts"] = pd.to_datetime(table["ts"], utc=True, format="ISO8601")
    return table.astype(COLUMNS).sort_values("ts", kind="stable").reset_index(drop=True)
