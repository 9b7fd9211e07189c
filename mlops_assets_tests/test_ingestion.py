"""Reading user files per sources.yaml: formats, reader options, renames, derived columns."""

from pathlib import Path

import pandas as pd
import pytest

from mlops_assets.core import ingestion
from mlops_assets.core.schemas import CANONICAL

LINES = pd.DataFrame(
    {
        "InvoiceNo": ["A1", "A1", "A2", "A3"],
        "InvoiceDate": [
            "2024-01-02 10:00:00",
            "2024-01-02 10:00:00",
            "2024-01-03 11:30:00",
            "2024-01-04 09:00:00",
        ],
        "CustomerID": ["00017", "00017", None, "00042"],
        "StockCode": ["X1", "X2", "X1", "X3"],
        "Country": ["UK", "UK", "FR", "UK"],
        "Quantity": [2, 1, -1, 3],
        "UnitPrice": [1.5, 10.0, 1.5, 2.25],
    }
)
MAPPING = {
    "order_id": "InvoiceNo",
    "order_ts": "InvoiceDate",
    "customer_id": "CustomerID",
    "product_id": "StockCode",
    "store_id": "Country",
    "quantity": "Quantity",
    "unit_price": "UnitPrice",
}


def load(path: Path, mapping=MAPPING, read=None) -> tuple[ingestion.RawSource, pd.DataFrame]:
    read = read or {}
    raw = ingestion.read_source("transactions", [path], read, mapping)
    return raw, ingestion.typed_frame("transactions", raw, read.get("date_format"))


def assert_canonical(typed: pd.DataFrame) -> None:
    assert list(typed.columns[: len(CANONICAL["transactions"])]) == list(CANONICAL["transactions"])
    assert typed["order_ts"].dtype == "datetime64[ns]"
    assert typed["quantity"].dtype == "float64"


def test_csv_renamed_and_typed(tmp_path):
    LINES.to_csv(tmp_path / "t.csv", index=False)
    raw, typed = load(tmp_path / "t.csv")
    assert_canonical(typed)
    assert typed["customer_id"].tolist()[:2] == ["00017", "00017"]  # ids keep leading zeros
    assert pd.isna(typed["customer_id"].iloc[2])  # a guest order
    assert typed["amount"].tolist() == [3.0, 10.0, -1.5, 6.75]  # quantity x unit_price
    assert typed["source_row"].tolist() == [1, 2, 3, 4]
    assert raw.missing == []


def test_parquet(tmp_path):
    LINES.to_parquet(tmp_path / "t.parquet")
    _, typed = load(tmp_path / "t.parquet")
    assert_canonical(typed)
    assert typed["order_ts"].iloc[2] == pd.Timestamp("2024-01-03 11:30")


def test_glob_reads_every_file(tmp_path):
    LINES.iloc[:2].to_csv(tmp_path / "jan.csv", index=False)
    LINES.iloc[2:].to_csv(tmp_path / "feb.csv", index=False)
    raw, typed = load(tmp_path / "jan.csv")
    assert len(typed) == 2
    files = sorted(tmp_path.glob("*.csv"))
    raw = ingestion.read_source("transactions", files, {}, MAPPING)
    typed = ingestion.typed_frame("transactions", raw)
    assert len(typed) == 4 and typed["source_file"].nunique() == 2


def test_whitespace_file_with_yyyymmdd_dates(tmp_path):
    text = "inv   day       cust qty price\nB1    20240105  7    2   3.5\nB2    20240106  8    1   12\n"
    (tmp_path / "t.txt").write_text(text)
    mapping = {
        "order_id": "inv",
        "order_ts": "day",
        "customer_id": "cust",
        "quantity": "qty",
        "unit_price": "price",
    }
    _, typed = load(tmp_path / "t.txt", mapping, {"sep": r"\s+", "date_format": "%Y%m%d"})
    assert typed["order_ts"].tolist() == [pd.Timestamp("2024-01-05"), pd.Timestamp("2024-01-06")]
    assert typed["unit_price"].tolist() == [3.5, 12.0]


def test_amount_instead_of_unit_price(tmp_path):
    df = LINES.drop(columns="UnitPrice").assign(Total=[3.0, 10.0, -1.5, 6.75])
    df.to_csv(tmp_path / "t.csv", index=False)
    mapping = {**{k: v for k, v in MAPPING.items() if k != "unit_price"}, "amount": "Total"}
    raw, typed = load(tmp_path / "t.csv", mapping)
    assert typed["unit_price"].tolist() == [1.5, 10.0, 1.5, 2.25]
    assert "unit_price derived as amount / quantity" in raw.notes


def test_no_customer_product_store_or_order_columns(tmp_path):
    LINES[["InvoiceDate", "Quantity", "UnitPrice"]].to_csv(tmp_path / "t.csv", index=False)
    mapping = {"order_ts": "InvoiceDate", "quantity": "Quantity", "unit_price": "UnitPrice"}
    raw, typed = load(tmp_path / "t.csv", mapping)
    assert typed["customer_id"].isna().all()
    assert set(typed["product_id"]) == {"ALL"} and set(typed["store_id"]) == {"ALL"}
    # derived order ids: one per (customer or guest@store, timestamp); lines 1-2 share one
    assert typed["order_id"].nunique() == 3
    assert typed["order_id"].iloc[0] == "guest@ALL|2024-01-02T10:00:00"
    assert any("order_id derived" in n for n in raw.notes)


def test_unparseable_values_are_kept_verbatim(tmp_path):
    df = LINES.astype({"InvoiceDate": object, "UnitPrice": object})
    df.loc[1, "InvoiceDate"] = "31/02/2024 25:00"
    df.loc[2, "UnitPrice"] = "1,50"
    df.to_csv(tmp_path / "t.csv", index=False)
    _, typed = load(tmp_path / "t.csv")
    assert pd.isna(typed["order_ts"].iloc[1]) and pd.isna(typed["unit_price"].iloc[2])
    assert typed["unparsed_values"].iloc[1] == "order_ts='31/02/2024 25:00'"
    assert typed["unparsed_values"].iloc[2] == "unit_price='1,50'"
    assert typed["unparsed_values"].iloc[[0, 3]].isna().all()


def test_mapped_column_absent_from_file_is_reported(tmp_path):
    LINES.rename(columns={"CustomerID": "cust_id"}).to_csv(tmp_path / "t.csv", index=False)
    raw, typed = load(tmp_path / "t.csv")
    assert raw.missing == ["customer_id"]
    assert "customer_id" not in raw.frame.columns
    assert typed["customer_id"].isna().all()


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_content_hash_changes_with_content(tmp_path, suffix):
    path = tmp_path / f"t{suffix}"
    LINES.to_csv(path, index=False)
    before = ingestion.content_hash([path])
    LINES.iloc[:3].to_csv(path, index=False)
    assert ingestion.content_hash([path]) != before


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        (
            ["05/01/2024 10:00", "13/01/2024 10:00", "02/02/2024 09:00"],
            ["2024-01-05", "2024-01-13", "2024-02-02"],
        ),
        (
            ["01/05/2024 10:00", "01/13/2024 10:00", "02/02/2024 09:00"],
            ["2024-01-05", "2024-01-13", "2024-02-02"],
        ),
        (["05.01.2024", "13.01.2024", "02.02.2024"], ["2024-01-05", "2024-01-13", "2024-02-02"]),
    ],
    ids=["day-first", "month-first", "dotted day-first"],
)
def test_day_and_month_order_is_read_from_the_whole_column(tmp_path, written, expected):
    lines = LINES.iloc[:3].assign(InvoiceDate=written)
    lines.to_csv(tmp_path / "t.csv", index=False)
    raw, typed = load(tmp_path / "t.csv")
    assert not raw.column_faults
    assert typed["order_ts"].dt.strftime("%Y-%m-%d").tolist() == expected


def test_dates_whose_order_cannot_be_told_are_a_fault_naming_the_column(tmp_path):
    lines = LINES.assign(InvoiceDate=["05/01/2024", "06/01/2024", "07/01/2024", "08/01/2024"])
    lines.to_csv(tmp_path / "t.csv", index=False)
    raw, _ = load(tmp_path / "t.csv")
    (fault,) = raw.column_faults
    assert "column 'InvoiceDate' (mapped to order_ts)" in fault and "'05/01/2024'" in fault
    # an explicit format settles it
    raw, typed = load(tmp_path / "t.csv", read={"date_format": "%d/%m/%Y"})
    assert not raw.column_faults and typed["order_ts"].dt.month.eq(1).all()


def test_a_whitespace_separated_file_with_a_broken_line_quarantines_only_that_line(tmp_path):
    # one field too many: pandas' reader stops the file on it; the line reader keeps the others
    lines = [
        "00001 19970101 1 11.77",
        "00002 19970112 1 12.00",
        "00002 19970112 5 1 x",
        "00003 19970102 2 20.76",
    ]
    (tmp_path / "cd.txt").write_text("customer date cds dollars\n" + "\n".join(lines) + "\n")
    mapping = {"customer_id": "customer", "order_ts": "date", "quantity": "cds", "amount": "dollars"}
    raw, typed = load(tmp_path / "cd.txt", mapping, {"sep": r"\s+", "date_format": "%Y%m%d"})
    assert not raw.faults and raw.bad_lines["source_row"].tolist() == [3]
    assert raw.bad_lines["read_fault"].tolist() == ["has 5 fields where the header has 4"]
    assert raw.bad_lines["raw_line"].tolist() == ["00002 19970112 5 1 x"]
    assert raw.frame["source_row"].tolist() == [1, 2, 4]
    assert typed["amount"].tolist() == [11.77, 12.0, 20.76]
