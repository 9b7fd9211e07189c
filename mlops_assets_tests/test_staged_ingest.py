"""Ingestion a file and a month at a time gives what routing every line at once gave, and each
stage handles only its own lines."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlops_assets.assets import transactions
from mlops_assets.assets.ingestion import read_and_audit, tx_gates
from mlops_assets.assets.partitions import window_of
from mlops_assets.core import ingestion, line_cache, quality, staging
from mlops_assets.core.schemas import PARTITION_COLUMN
from mlops_assets.settings import load_settings

COLUMNS = ["order", "ts", "customer", "sku", "qty", "price"]
LINEAGE = ["source_file", "source_row"]


def _lines(rng: np.random.Generator, n: int, start: str, days: int) -> pd.DataFrame:
    ts = pd.Timestamp(start) + pd.to_timedelta(rng.integers(0, days * 86400, n), unit="s")
    sku = rng.choice([f"P{i}" for i in range(6)], n)
    return pd.DataFrame(
        {
            "order": [f"O{start[:7]}-{i // 2}" for i in range(n)],
            "ts": ts.strftime("%Y-%m-%d %H:%M:%S"),
            "customer": rng.choice([f"C{i}" for i in range(40)], n),
            "sku": sku,
            "qty": rng.integers(1, 4, n).astype(float),
            "price": [10.0 + int(s[1:]) for s in sku],
        }
    )


@pytest.fixture
def feed(tmp_path: Path) -> Path:
    """Two files over three months, with what only the whole run decided before: a line
    re-sent a month later (replay), returns whose sale is in the month before (and one with no
    sale), a price judged against the run's median (no catalog), duplicates across the files,
    and a first line with no timestamp."""
    rng = np.random.default_rng(3)
    first = pd.concat([_lines(rng, 300, "2023-01-01", 31), _lines(rng, 300, "2023-02-01", 28)])
    second = _lines(rng, 400, "2023-03-01", 31)
    replay = first.iloc[[5]].assign(ts="2023-02-03 10:00:00")  # January's line, re-dated
    sold = first[first["ts"].str.startswith("2023-02-2")].iloc[[0]]
    returned = sold.assign(order="R1", ts="2023-03-02 09:00:00", qty=-sold["qty"])
    unsold = sold.assign(order="R2", customer="C-nobody", ts="2023-03-03 09:00:00", qty=-1.0)
    outlier = first.iloc[[7]].assign(order="X1", ts="2023-03-10 12:00:00", price=500.0)
    broken = first.iloc[[0]].assign(ts="not a time")
    one = pd.concat([broken, first, replay])
    two = pd.concat([second, returned, unsold, outlier, second.iloc[[3, 4]], first.iloc[[9]]])
    raw = tmp_path / "raw"
    raw.mkdir()
    one.to_csv(raw / "orders-1.csv", index=False)
    two.to_csv(raw / "orders-2.csv", index=False)
    spec = {
        "transactions": {
            "path": "raw/orders-*.csv",
            "columns": dict(
                zip(
                    ["order_id", "order_ts", "customer_id", "product_id", "quantity", "unit_price"],
                    COLUMNS,
                    strict=True,
                )
            ),  # fmt: skip
        },
        "window": {"start_date": "2023-01-01", "end_date": "2023-03-31"},
        "quality": {"return_lookback_days": 20},
    }
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path


def _whole_run(settings, window) -> quality.Split:
    """Every line at once, as ingestion routed before it went a month at a time."""
    _, typed, _ = read_and_audit(settings, "transactions", tx_gates())
    typed[PARTITION_COLUMN] = quality.attribute_partitions(typed, window.bounds)
    q = settings.quality
    return quality.split_transactions(
        typed,
        window.bounds,
        now=pd.Timestamp.now(),
        max_abs_quantity=q.max_abs_quantity,
        price_outlier_factor=q.price_outlier_factor,
        earlier_orders=pd.DataFrame({"first_day": pd.Series(dtype="datetime64[ns]")}),
        return_lookback_days=q.return_lookback_days,
    )


def _by_lineage(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in lineage order; the reason as text (Parquet hands it back arrow-backed)."""
    if "reason" in frame:
        frame = frame.astype({"reason": object})
    return frame.sort_values(LINEAGE, ignore_index=True)


def test_a_month_at_a_time_routes_every_line_as_the_whole_run_did(feed, monkeypatch):
    settings = load_settings(feed)
    window = window_of(settings)
    whole = _whole_run(settings, window)
    reasons = set(whole.quarantined["reason"])
    # the rules that look across months all fired, so the months really had to talk
    assert {"replayed_order", "return_without_sale", "outlier_price", "duplicate_line",
            "unparseable_order_ts"} <= reasons, reasons  # fmt: skip

    routed: list[int] = []  # the lines each month's routing query read
    month_lines = transactions._Router._month_lines

    def counted(self, con, month):
        lines = month_lines(self, con, month)
        routed.append(int(con.to_pyarrow(lines.count()).as_py()))
        return lines

    monkeypatch.setattr(transactions._Router, "_month_lines", counted)
    read: list[str] = []
    read_source = ingestion.read_source
    monkeypatch.setattr(
        ingestion,
        "read_source",
        lambda n, files, *a, **k: read.extend(map(str, files)) or read_source(n, files, *a, **k),
    )  # noqa: E501

    run = transactions.ingest(
        settings, window, window.bounds.start, window.bounds.end, pd.DataFrame(), tx_gates()
    )
    try:
        assert run.publishes, [r.description for r in run.results if not r.passed]
        pd.testing.assert_frame_equal(_by_lineage(run.split.silver), _by_lineage(whole.silver))
        pd.testing.assert_frame_equal(_by_lineage(run.split.quarantined), _by_lineage(whole.quarantined))
        pd.testing.assert_frame_equal(run.report, whole.report)
        # each file was read once; each month's routing saw that month's lines, no more
        assert sorted(read) == sorted(str(p) for p in settings.files("transactions"))
        per_month = whole.report.groupby(whole.report[PARTITION_COLUMN].dt.to_period("M"))[
            "bronze_rows"
        ].sum()
        assert routed == per_month.tolist() and sum(routed) == len(whole.silver) + len(whole.quarantined)
        assert max(routed) < sum(routed) / 2
    finally:
        run.close()
    assert not run.stage.root.exists()


def test_day_first_dates_split_over_files_are_decided_over_all_of_them(tmp_path):
    """One file per day, each with only ambiguous dates: together they tell day-first."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for day in (5, 13):
        frame = pd.DataFrame({"order": [f"O{day}", f"P{day}"], "ts": [f"{day:02d}/02/2023 10:00"] * 2,
                              "customer": ["C1", "C2"], "sku": ["A", "B"], "qty": [1, 2],
                              "price": [3.0, 4.0]})  # fmt: skip
        frame.to_csv(raw / f"day-{day:02d}.csv", index=False)
    canonical = ["order_id", "order_ts", "customer_id", "product_id", "quantity", "unit_price"]
    spec = {
        "transactions": {"path": "raw/day-*.csv", "columns": dict(zip(canonical, COLUMNS, strict=True))},
        "window": {"start_date": "2023-01-01", "end_date": "2023-03-31"},
    }
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump(spec))
    settings = load_settings(tmp_path)
    window = window_of(settings)
    run = transactions.ingest(
        settings, window, window.bounds.start, window.bounds.end, pd.DataFrame(), tx_gates()
    )
    try:
        assert run.publishes, [r.description for r in run.results if not r.passed]
        days = sorted(run.split.silver["order_ts"].dt.strftime("%Y-%m-%d").unique())
        assert days == ["2023-02-05", "2023-02-13"]
    finally:
        run.close()


def _ingest(settings) -> transactions.Ingested:
    window = window_of(settings)
    return transactions.ingest(
        settings, window, window.bounds.start, window.bounds.end, pd.DataFrame(), tx_gates()
    )


def _files_read(monkeypatch) -> list[str]:
    """The names of the files ingestion reads from now on (a file taken from the cache is not)."""
    read: list[str] = []
    read_source = ingestion.read_source
    monkeypatch.setattr(
        ingestion,
        "read_source",
        lambda n, files, *a, **k: read.extend(p.name for p in files) or read_source(n, files, *a, **k),
    )
    return read


def test_a_file_already_read_unchanged_is_not_read_again(feed, monkeypatch):
    settings = load_settings(feed)
    first = _ingest(settings)
    before = {name: first.table(name) for name in ("bronze", "silver", "quarantined")}
    first.close()
    read = _files_read(monkeypatch)
    again = _ingest(settings)
    try:
        assert read == [] and again.publishes
        for name, frame in before.items():
            pd.testing.assert_frame_equal(again.table(name), frame)
    finally:
        again.close()
    changed = feed / "raw" / "orders-2.csv"
    changed.write_text(changed.read_text() + "Z1,2023-03-20 10:00:00,C1,P1,1.0,11.0\n")
    third = _ingest(settings)
    try:
        assert read == ["orders-2.csv"] and len(third.table("bronze")) == len(before["bronze"]) + 1
    finally:
        third.close()


def test_a_day_added_to_the_window_reads_only_the_files_that_reach_it(feed, monkeypatch):
    """The window's end moves every day (an open window ends today): a file whose lines all
    lie before both ends is not read again; a file with lines on the new day is, and its
    lines land on their own day, as a run without the cache gives."""
    stray = feed / "raw" / "orders-1.csv"  # a future date in the older file: outside both windows
    stray.write_text(stray.read_text() + "F1,2031-05-01 10:00:00,C1,P1,1.0,11.0\n")
    spec = yaml.safe_load((feed / "sources.yaml").read_text())
    spec["window"]["end_date"] = "2023-03-30"  # orders-2 has lines on the 31st: outside, for now
    (feed / "sources.yaml").write_text(yaml.safe_dump(spec))
    _ingest(load_settings(feed)).close()
    read = _files_read(monkeypatch)
    spec["window"]["end_date"] = "2023-03-31"
    (feed / "sources.yaml").write_text(yaml.safe_dump(spec))
    grown = _ingest(load_settings(feed))
    try:
        assert read == ["orders-2.csv"]
        tables = {name: grown.table(name) for name in ("bronze", "silver", "quarantined")}
    finally:
        grown.close()
    assert (tables["silver"][PARTITION_COLUMN] == pd.Timestamp("2023-03-31")).sum() > 0
    shutil.rmtree(feed / line_cache.FOLDER)
    cold = _ingest(load_settings(feed))
    try:
        for name, frame in tables.items():
            pd.testing.assert_frame_equal(frame, cold.table(name))
    finally:
        cold.close()


@pytest.mark.parametrize(
    ("end", "serves"),
    [
        ("2023-04-01", True),  # the same end
        ("2023-04-05", True),  # later, before the late line's day
        ("2023-04-11", False),  # later, past a line on 2023-04-10: its day changes
        ("2023-03-30", True),  # earlier, after the latest line inside
        ("2023-03-29", False),  # earlier, before a line of 2023-03-29: it leaves the window
    ],
)
def test_a_cache_entry_serves_a_window_end_when_no_line_lies_between(end, serves):
    stamps = pd.Series(pd.to_datetime(["2023-03-01 10:00", "2023-03-29 23:00", "2023-04-10 09:00"]))
    meta = {line_cache.END: "2023-04-01", **line_cache.end_facts(stamps, pd.Timestamp("2023-04-01"))}
    assert line_cache.serves(meta, pd.Timestamp(end)) is serves


REAL_LOGS = {
    # CDNOW: whitespace-separated, a line per purchase (dollar value, no price); 1997-1998
    "cdnow": (
        "cdnow_master.txt.gz",
        {"sep": r"\s+"},
        {"customer_id": "customer_id", "order_ts": "date", "quantity": "number_of_cds",
         "amount": "dollar_value"},
        ("1997-01-01", "1998-06-30"),
    ),
    # a bike wholesaler's order lines, 2011
    "bike_sales": (
        "bike_sales_sample.csv",
        {"date_format": "%Y-%m-%d"},
        {"order_id": "order_id", "order_ts": "order_date", "customer_id": "bikeshop_name",
         "product_id": "model", "quantity": "quantity", "amount": "total_price"},
        ("2011-01-01", "2011-12-31"),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(REAL_LOGS))
def test_real_logs_route_as_the_whole_run_did(name, tmp_path):
    """On real public order logs (mlops_assets_tests/fixtures), a month at a time publishes
    what routing every line at once published: the same rows, reasons and quality report."""
    from mlops_assets_tests.realdata import FIXTURES

    file, read, columns, (start, end) = REAL_LOGS[name]
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / file).write_bytes((FIXTURES / file).read_bytes())
    spec = {"transactions": {"path": f"raw/{file}", "read": read, "columns": columns},
            "window": {"start_date": start, "end_date": end}}  # fmt: skip
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump(spec))
    settings = load_settings(tmp_path)
    whole = _whole_run(settings, window_of(settings))
    run = _ingest(settings)
    try:
        assert run.publishes and len(run.stage.lines) > 6, [
            r.description for r in run.results if not r.passed
        ]
        pd.testing.assert_frame_equal(_by_lineage(run.split.silver), _by_lineage(whole.silver))
        pd.testing.assert_frame_equal(_by_lineage(run.split.quarantined), _by_lineage(whole.quarantined))
        pd.testing.assert_frame_equal(run.report, whole.report)
        assert len(run.split.silver) > 2000
    finally:
        run.close()


def test_a_large_file_read_in_pieces_gives_what_a_whole_read_gives(tmp_path, monkeypatch):
    """20,000 lines of the shipped sample with broken records past the first piece (a ragged
    line, a quoted field spanning lines, a repeated header, a line cut short at the end), read
    whole and in pieces of 100 kB: the same rows, record numbers, reasons and report."""
    import gzip

    from mlops_assets.core import pieces
    from mlops_assets.settings import REPO_ROOT

    with gzip.open(REPO_ROOT / "data/raw/transactions.csv.gz", "rt") as fh:
        lines = [next(fh).rstrip("\n") for _ in range(20_001)]
    header, body = lines[0], lines[1:]
    body[5_000] += ",an extra field"
    fields = body[9_000].split(",")
    body[9_000] = ",".join([fields[0], f'"{fields[1]}\nmore"', *fields[2:]])
    body[14_000] = header
    text = "\n".join([header, *body]) + "\n" + body[100][:20]  # cut short, no line end
    spec = yaml.safe_load((REPO_ROOT / "data/sources.yaml").read_text())
    spec["transactions"]["path"] = "raw/orders.csv.gz"
    spec.pop("products"), spec.pop("inventory")
    results = {}
    for how in ("whole", "pieces"):
        folder = tmp_path / how
        (folder / "raw").mkdir(parents=True)
        (folder / "raw/orders.csv.gz").write_bytes(gzip.compress(text.encode()))
        (folder / "sources.yaml").write_text(yaml.safe_dump(spec))
        if how == "pieces":
            monkeypatch.setattr(pieces, "STREAM_BYTES", 0)
            monkeypatch.setattr(pieces, "PIECE_BYTES", 100_000)
        run = _ingest(load_settings(folder))
        try:
            assert run.publishes, [r.description for r in run.results if not r.passed]
            results[how] = {
                name: _by_lineage(run.table(name)) for name in ("bronze", "silver", "quarantined")
            }
            results[how]["report"] = run.report
        finally:
            run.close()
    whole, parts = results["whole"], results["pieces"]
    assert len(whole["bronze"]) == 20_001 and whole["bronze"]["source_row"].tolist() == list(range(1, 20_002))
    faults = whole["quarantined"]["read_fault"].dropna()
    assert faults.str.contains("field").sum() == 2 and faults.str.contains("repeats the header").sum() == 1
    for name, frame in whole.items():
        pd.testing.assert_frame_equal(parts[name], frame)


def test_a_piece_ends_where_a_record_ends_outside_quotes():
    from mlops_assets.core.pieces import cut

    buffer = b'h1,h2\n1,"two\nlines"\n3,4'
    assert buffer[: cut(buffer, b'"')] == b'h1,h2\n1,"two\nlines"\n'
    assert cut(b'1,"an open\nquote', b'"') == 0  # no record ends in it yet: read on
    assert cut(b'1,"say ""hi""\nthere"\n', b'"') == len(b'1,"say ""hi""\nthere"\n')


@pytest.mark.parametrize("ordered", [True, False])
def test_month_files_hold_each_months_lines_in_their_order(tmp_path, ordered):
    """A piece cut into months by slices writes what pandas' groupby by month gave: each month's
    lines, in the order they came, text intact; lines without a partition day are not written."""
    rng = np.random.default_rng(3)
    n = 500
    days = pd.Timestamp("2024-01-20") + pd.to_timedelta(np.sort(rng.integers(0, 70, n)), unit="D")
    if not ordered:
        days = days[rng.permutation(n)]
    piece = pd.DataFrame(
        {
            "order_id": pd.array([f"O{i}" for i in range(n)], dtype="string[pyarrow]"),
            "quantity": rng.integers(1, 5, n).astype(float),
            PARTITION_COLUMN: days,
        }
    )
    piece.loc[rng.choice(n, 7, replace=False), PARTITION_COLUMN] = pd.NaT
    files = staging.MonthFiles(tmp_path)
    files.write(piece.iloc[:300])
    files.write(piece.iloc[300:])
    files.close()
    months = piece[PARTITION_COLUMN].dt.to_period("M")
    expected = {str(m): part.reset_index(drop=True) for m, part in piece.groupby(months)}
    assert sorted(p.stem for p in tmp_path.glob("*.parquet")) == sorted(expected) == [
        "2024-01", "2024-02", "2024-03"
    ]  # fmt: skip
    for month, part in expected.items():
        written = pd.read_parquet(tmp_path / f"{month}.parquet")
        pd.testing.assert_frame_equal(written, part, check_dtype=False)
        assert files.lines[pd.Period(month, "M")] == len(part)
    assert sum(files.lines.values()) == n - 7
