"""The corruption corpus (corruptions.py) through the bronze reader, its gates and the split:
each kind blocked by name, quarantined exactly, or accepted as the clean file's data, and in
every case each line of the file in exactly one of silver or quarantine."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlops_assets.assets import transactions
from mlops_assets.assets.ingestion import _gates, read_and_audit, tx_gates
from mlops_assets.assets.partitions import window_of
from mlops_assets.core import quality
from mlops_assets.core.schemas import CANONICAL, READ_FAULT, UNPARSED
from mlops_assets.settings import REPO_ROOT, load_settings
from mlops_assets_tests.corruptions import KINDS, Kind

LINES = 400  # the shipped sample's first lines: January 2023, guests and returns among them
VALUES = list(CANONICAL["transactions"])


@pytest.fixture(scope="module")
def clean() -> tuple[str, list[str]]:
    with gzip.open(REPO_ROOT / "data/raw/transactions.csv.gz", "rt") as fh:
        rows = [next(fh).rstrip("\n") for _ in range(LINES + 1)]
    return rows[0], rows[1:]


def data_dir(base: Path, name: str) -> Path:
    folder = base / "data"
    (folder / "raw").mkdir(parents=True)
    spec = yaml.safe_load((REPO_ROOT / "data/sources.yaml").read_text())
    spec["transactions"]["path"] = f"raw/{name}"
    spec["window"] = {"start_date": "2023-01-01", "end_date": "2023-01-31"}
    for ref in ("products", "inventory"):
        shutil.copy(REPO_ROOT / "data" / spec[ref]["path"], folder / spec[ref]["path"])
    (folder / "sources.yaml").write_text(yaml.safe_dump(spec))
    return folder


def ingest(folder: Path) -> transactions.Ingested:
    """ingest_transactions' work over the file's whole window, as the step does it."""
    settings = load_settings(folder)
    window = window_of(settings)
    catalog = read_and_audit(settings, "products", _gates("bronze_products"))[1]
    return transactions.ingest(settings, window, window.bounds.start, window.bounds.end, catalog, tx_gates())


def values(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[VALUES].astype(str).sort_values(VALUES).reset_index(drop=True)
    return out


@pytest.fixture(scope="module")
def baseline(clean, tmp_path_factory):
    header, lines = clean
    folder = data_dir(tmp_path_factory.mktemp("clean"), "orders.csv")
    (folder / "raw/orders.csv").write_text("\n".join([header, *lines]) + "\n")
    run = ingest(folder)
    assert all(r.passed for r in run.results) and len(run.bronze) == LINES and len(run.split.silver) > 300
    return run.split


def test_the_corpus_has_forty_kinds_of_each_outcome():
    outcomes = pd.Series([k.outcome for k in KINDS]).value_counts()
    assert len(KINDS) >= 40 and len({k.name for k in KINDS}) == len(KINDS)
    assert set(outcomes.index) == {"blocked", "quarantined", "accepted"} and outcomes.min() >= 10


@pytest.fixture(params=["whole", "pieces"])
def reading(request, monkeypatch) -> str:
    """Each kind read as a small file is (whole), and as a large one is (core/pieces.py: a
    streamed, decompressed file, checked on its first bytes)."""
    if request.param == "pieces":
        from mlops_assets.core import pieces

        monkeypatch.setattr(pieces, "STREAM_BYTES", 0)
        monkeypatch.setattr(pieces, "PIECE_BYTES", 4096)
    return request.param


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_corruption_kind(kind: Kind, clean, baseline, tmp_path, reading):
    header, lines = clean
    name = f"orders{kind.suffix}"
    folder = data_dir(tmp_path, name)
    (folder / "raw" / name).write_bytes(kind.make(header, lines))
    run = ingest(folder)
    bronze, split = run.bronze, run.split
    failed = [r for r in run.results if not r.passed]

    if kind.outcome == "blocked":
        gate = next(r for r in run.results if r.check_name == kind.gate)
        assert not gate.passed and not run.publishes, f"{kind.name}: not blocked"
        assert kind.detail in gate.description, gate.description
        assert kind.gate != "files_readable" or f"raw/{name}" in gate.description
        assert "Traceback" not in gate.description
        return

    assert not failed, f"{kind.name}: blocked by {[r.description for r in failed]}"
    # every record of the file is one bronze row, in exactly one of silver or quarantine
    assert len(split.silver) + len(split.quarantined) == len(bronze)
    assert quality.lines_in_both(split.silver, split.quarantined) == 0
    assert sorted(bronze["source_row"]) == list(range(1, len(bronze) + 1))

    if kind.outcome == "accepted":
        pd.testing.assert_frame_equal(values(split.silver), values(baseline.silver))
        assert len(split.quarantined) == len(baseline.quarantined)
        return

    expected = kind.lines(lines) if callable(kind.lines) else kind.lines
    before = baseline.quarantined["reason"].eq(kind.detail).sum()
    assert split.quarantined["reason"].eq(kind.detail).sum() - before == expected > 0, kind.name
    # what silver keeps is the clean file's data, less the broken lines
    kept = values(split.silver).merge(values(baseline.silver), how="left", indicator=True)
    assert (kept["_merge"] == "both").all() and len(baseline.silver) - len(split.silver) <= expected
    if kind.detail == "unreadable_line":
        bad = split.quarantined[split.quarantined["reason"] == "unreadable_line"]
        assert bad[READ_FAULT].notna().all() and bad[UNPARSED].str.startswith("line=").all()
        assert bad["source_file"].eq(f"raw/{name}").all()
