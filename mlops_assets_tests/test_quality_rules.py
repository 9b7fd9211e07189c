"""Quarantine rules: each rule on a tiny hand-built frame; returns stay valid; nothing is lost."""

import pandas as pd
import pytest

from mlops_assets.core import line_rules, quality
from mlops_assets.core.quality import Window
from mlops_assets.core.schemas import CANONICAL

WINDOW = Window(pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01"))
NOW = pd.Timestamp("2024-06-01")
CATALOG = pd.DataFrame({"product_id": ["P1", "P2"], "price": [10.0, 4.0]})


def line(**over) -> dict:
    base = {
        "order_id": "O1",
        "order_ts": pd.Timestamp("2024-01-10 12:00"),
        "customer_id": "C1",
        "product_id": "P1",
        "store_id": "S1",
        "quantity": 2.0,
        "unit_price": 10.0,
        "amount": 20.0,
        "unparsed_values": None,
        "read_fault": None,
        "source_file": "f.csv",
        "source_row": 1,
        "partition_date": pd.Timestamp("2024-01-10"),
    }
    return {**base, **over}


def frame(*lines: dict) -> pd.DataFrame:
    df = pd.DataFrame(lines)
    df["source_row"] = range(1, len(df) + 1)
    return df


def split(df, catalog=CATALOG, earlier=None):
    earlier = pd.DataFrame({"first_day": []}) if earlier is None else earlier
    return quality.split_transactions(
        df, WINDOW, NOW, catalog, max_abs_quantity=1000, price_outlier_factor=10, earlier_orders=earlier,
        return_lookback_days=30,
    )  # fmt: skip


GOOD = line()
CASES = {
    "unreadable_line": line(
        order_id=None,
        order_ts=pd.NaT,
        customer_id=None,
        product_id=None,
        store_id=None,
        quantity=float("nan"),
        unit_price=float("nan"),
        amount=float("nan"),
        unparsed_values="line='TRAILER,200000'",
        read_fault="has 2 fields where the header has 8",
    ),  # fmt: skip
    "unparseable_order_ts": line(order_ts=pd.NaT, unparsed_values="order_ts='31/02'"),
    "unparseable_value": line(unit_price=float("nan"), unparsed_values="unit_price='1,50'"),
    "missing_key": line(product_id=None),
    "future_timestamp": line(order_ts=pd.Timestamp("2031-01-01")),
    "outside_window": line(order_ts=pd.Timestamp("2023-12-31 23:59")),
    "replayed_order": line(order_ts=pd.Timestamp("2024-01-12 12:00")),  # GOOD re-sent two days later
    # C1 never bought P2 (late in the window, where the 30-day lookback is judged)
    "return_without_sale": line(
        quantity=-1.0, product_id="P2", unit_price=4.0, order_ts=pd.Timestamp("2024-01-31")
    ),
    "zero_quantity": line(quantity=0.0),
    "absurd_quantity": line(quantity=80995.0),
    "non_positive_price": line(unit_price=0.0),
    "outlier_price": line(unit_price=1000.0),
    "unknown_product": line(product_id="P404", unit_price=10.0),
}


@pytest.mark.parametrize("rule", list(CASES))
def test_each_rule_quarantines_its_line_with_the_reason(rule):
    out = split(frame(GOOD, CASES[rule]))
    assert out.quarantined["reason"].tolist() == [rule]
    assert len(out.silver) == 1 and out.silver["source_row"].tolist() == [1]
    # the quarantined line keeps its original values
    assert out.quarantined["source_row"].tolist() == [2]


def test_every_rule_has_a_case():
    assert set(CASES) | {"duplicate_line"} == set(quality.RULES)


def test_a_line_published_on_an_earlier_day_is_a_replay_and_the_rule_can_be_off():
    def published(day: str) -> pd.DataFrame:
        return frame(GOOD)[line_rules.REPLAY_KEY].assign(first_day=pd.Timestamp(day))

    out = split(frame(GOOD, line(order_id="O2")), earlier=published("2024-01-05"))
    assert out.quarantined["reason"].tolist() == ["replayed_order"] and out.silver["order_id"].tolist() == [
        "O2"
    ]
    # published after: this day is the first
    assert split(frame(GOOD), earlier=published("2024-01-20")).quarantined.empty
    # the same order id with another product on another day is another line, not a replay
    assert split(
        frame(GOOD, line(order_ts=pd.Timestamp("2024-01-12"), product_id="P2", unit_price=4.0))
    ).quarantined.empty
    resent = frame(GOOD, CASES["replayed_order"])
    assert quality.split_transactions(resent, WINDOW, NOW, CATALOG, earlier_orders=None).quarantined.empty


def test_a_return_needs_a_sale_of_its_product_to_its_customer_within_the_lookback():
    def reasons(*lines, earlier=None, days=5):
        out = quality.split_transactions(
            frame(*lines), WINDOW, NOW, CATALOG, earlier_sales=earlier, return_lookback_days=days
        )
        return sorted(out.quarantined["reason"].tolist())

    back = line(order_id="R1", quantity=-1.0, order_ts=pd.Timestamp("2024-01-12 09:00"))
    assert reasons(GOOD, back) == []  # bought on the 10th, returned on the 12th
    assert reasons(GOOD, back.copy() | {"order_ts": pd.Timestamp("2024-01-20")}) == ["return_without_sale"]
    assert reasons(back) == ["return_without_sale"]
    assert reasons(back, days=None) == []  # the rule is off unless configured
    assert reasons(back | {"customer_id": None}) == []  # a guest's return cannot be matched
    early = back | {"order_ts": pd.Timestamp("2024-01-03")}  # its sale may precede the data
    assert reasons(early) == []
    published = pd.DataFrame(
        {"customer_id": ["C1"], "product_id": ["P1"], "order_ts": [pd.Timestamp("2024-01-09")]}
    )
    assert reasons(back, earlier=published) == []


def test_exact_duplicate_keeps_the_first():
    out = split(frame(GOOD, line(customer_id="C2"), GOOD))
    assert out.quarantined["reason"].tolist() == ["duplicate_line"]
    assert out.quarantined["source_row"].tolist() == [3]
    assert len(out.silver) == 2


def test_duplicate_lines_compare_text_and_nulls_as_pandas_does():
    # same timestamp, quantity and price; only text differs; nulls equal nulls, as in pandas
    df = frame(
        GOOD, line(customer_id="C2"), line(product_id="P2"), GOOD, line(customer_id="C2"),
        line(customer_id=None, amount=float("nan")), line(customer_id=None, amount=float("nan")),
    )  # fmt: skip
    columns = list(CANONICAL["transactions"])
    reason = split(df, catalog=None).quarantined.set_index("source_row")["reason"]
    engine = pd.Series(False, index=df.index)
    engine[(reason[reason == "duplicate_line"].index - 1).to_numpy()] = True
    assert engine.tolist() == [False, False, False, True, True, False, True]
    assert engine.equals(df.duplicated(columns, keep="first"))


def test_lines_in_both_counts_a_line_in_silver_and_quarantine():
    out = split(frame(GOOD, line(quantity=0.0), line(order_id="O3")))
    assert quality.lines_in_both(out.silver, out.quarantined) == 0
    leaked = pd.concat([out.quarantined, out.silver.head(1)], ignore_index=True)
    assert quality.lines_in_both(out.silver, leaked) == 1
    # same row number in another file is another line
    other = out.silver.head(1).assign(source_file="g.csv")
    assert quality.lines_in_both(out.silver, other) == 0


def test_returns_are_valid_lines():
    ret = line(order_id="R1", quantity=-1.0, amount=-10.0, order_ts=pd.Timestamp("2024-01-20"))
    out = split(frame(GOOD, ret))
    assert out.quarantined.empty
    assert out.silver["quantity"].tolist() == [2.0, -1.0]


def test_unknown_product_only_when_a_catalog_exists():
    out = split(frame(GOOD, CASES["unknown_product"]), catalog=None)
    assert out.quarantined.empty


def test_outlier_price_without_catalog_uses_the_product_median():
    lines = [line(unit_price=p, customer_id=f"C{i}") for i, p in enumerate([10, 11, 9, 10, 12, 500])]
    out = split(frame(*lines), catalog=None)
    assert out.quarantined["unit_price"].tolist() == [500.0]


def test_promotional_prices_are_not_outliers():
    out = split(frame(GOOD, line(customer_id="C9", unit_price=6.5)))  # 35% off the list price
    assert out.quarantined.empty


def test_conservation_and_report_reconcile():
    lines = [GOOD, *CASES.values(), GOOD]
    out = split(frame(*lines))
    assert len(out.silver) + len(out.quarantined) == len(lines)
    report = out.report
    assert report["bronze_rows"].sum() == len(lines)
    assert (report["bronze_rows"] == report["silver_rows"] + report["quarantined_rows"]).all()
    assert report[[f"rule_{r}" for r in quality.RULES]].sum().sum() == len(out.quarantined)
    assert report["rule_duplicate_line"].sum() == 1
    summary = quality.run_summary(report)
    assert summary["quarantine_share"] == pytest.approx(len(out.quarantined) / len(lines))


def test_report_null_rates_per_column():
    out = split(frame(GOOD, line(customer_id=None, order_id="O2")))
    assert out.report["null_customer_id"].iloc[0] == pytest.approx(0.5)
    assert out.report["null_order_id"].iloc[0] == 0.0


def test_out_of_window_lines_belong_to_their_neighbours_day():
    df = frame(
        line(order_ts=pd.NaT),  # leading bad line: takes the next good line's day
        line(order_ts=pd.Timestamp("2024-01-05 10:00")),
        line(order_ts=pd.Timestamp("2031-01-01")),  # future: takes the previous good line's day
        line(order_ts=pd.Timestamp("2024-01-07 10:00")),
    )
    days = quality.attribute_partitions(df, WINDOW)
    assert days.tolist() == [
        pd.Timestamp(d) for d in ["2024-01-05", "2024-01-05", "2024-01-05", "2024-01-07"]
    ]


def test_a_file_with_no_valid_line_goes_to_the_window_start():
    df = frame(line(order_ts=pd.NaT), line(order_ts=pd.Timestamp("1999-01-01")))
    assert set(quality.attribute_partitions(df, WINDOW)) == {WINDOW.start}
