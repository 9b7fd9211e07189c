"""python -m mlops_assets.sample_data --lines N --seed S --out DIR

Writes DIR/raw/{transactions,products,inventory} and a DIR/sources.yaml that maps them.

python -m mlops_assets.sample_data --out DIR --next-period DAYS [--price-level X]
    [--new-customer-share S] [--collapse-category NAME]

Writes the DAYS after DIR's window as a new transactions file (optionally shifted: the drift
scenario) and extends the window in DIR/sources.yaml.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from mlops_assets.sample_data import generate
from mlops_assets.sample_data.next_period import Shift, next_period
from mlops_assets.sample_data.shards import Shards


def sources_yaml(tx_file: str, start: str, end: str) -> dict:
    return {
        "transactions": {
            "path": f"raw/{tx_file}",
            "columns": {
                "order_id": "invoice_id",
                "order_ts": "invoice_ts",
                "customer_id": "customer",
                "product_id": "sku",
                "store_id": "store",
                "quantity": "qty",
                "unit_price": "unit_price",
            },
        },
        "products": {
            "path": "raw/products.csv",
            "columns": {
                "product_id": "sku",
                "name": "product_name",
                "category": "category",
                "price": "list_price",
                "rating": "rating",
            },
        },
        "inventory": {
            "path": "raw/inventory.csv",
            "read": {"date_format": "%Y%m%d"},
            "columns": {"snapshot_date": "snapshot_date", "product_id": "sku", "on_hand": "units_on_hand"},
        },
        "window": {"start_date": start, "end_date": end},
        "forecast": {
            "freq": "D",
            "horizon": 28,
            "levels": ["total", "store", "category", "product", "product_store"],
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlops_assets.sample_data", description=__doc__)
    parser.add_argument("--lines", type=int, default=200_000, help="order lines to write")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--products", type=int, default=200, help="products in the catalog (5 stores each)")
    parser.add_argument("--out", type=Path, default=Path("data"))
    parser.add_argument("--start", default="2023-01-01")
    parser.add_argument("--end", default="2024-12-31")
    parser.add_argument("--format", choices=["csv", "parquet"], default="csv")
    parser.add_argument("--no-compress", action="store_true", help="plain .csv instead of .csv.gz")
    parser.add_argument(
        "--shard-lines",
        type=int,
        default=2_000_000,
        help="above this many lines, write customer shards of about this size "
        "(raw/transactions-NNN.csv.gz, one in memory at a time): a chain-sized log in bounded memory",
    )
    scenario = parser.add_argument_group("next period (drift scenario) of an existing --out")
    scenario.add_argument("--next-period", type=int, metavar="DAYS", help="days to add after the window")
    scenario.add_argument("--price-level", type=float, default=1.0, help="unit prices times this")
    scenario.add_argument(
        "--new-customer-share", type=float, default=0.0, help="share of customers replaced by new ones"
    )
    scenario.add_argument("--collapse-category", help="a category keeping only 10%% of its lines")
    args = parser.parse_args(argv)
    if args.next_period:
        shift = Shift(args.price_level, args.new_customer_share, args.collapse_category)
        path = next_period(args.out, args.next_period, args.seed, shift)
        print(f"wrote {path} and extended the window in {args.out / 'sources.yaml'}")
        return

    raw = args.out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    if args.lines > args.shard_lines:
        _write_shards(args, raw)
        return
    data = generate(
        lines=args.lines, n_products=args.products, seed=args.seed, start=args.start, end=args.end
    )
    if args.format == "parquet":
        tx_file = "transactions.parquet"
        data.transactions.to_parquet(raw / tx_file, index=False)
    else:
        tx_file = "transactions.csv" if args.no_compress else "transactions.csv.gz"
        # mtime=0 keeps the gzip bytes identical from run to run
        compression = None if args.no_compress else {"method": "gzip", "mtime": 0}
        data.transactions.to_csv(raw / tx_file, index=False, compression=compression)
    _write_reference(args, raw, tx_file, data.products, data.inventory, len(data.transactions))


def _write_shards(args, raw: Path) -> None:
    """One customer shard generated and written at a time (generator.Shards)."""
    for old in raw.glob("transactions*"):
        old.unlink()
    shards = Shards(args.lines, args.seed, args.start, args.end, args.products, args.shard_lines)
    suffix = ".parquet" if args.format == "parquet" else ".csv" if args.no_compress else ".csv.gz"
    written = 0
    for k, lines in shards.transactions():
        path = raw / f"transactions-{k:03d}{suffix}"
        if args.format == "parquet":
            lines.to_parquet(path, index=False)
        else:  # a fast gzip level: a 50M-line log is written in minutes, not an hour
            compression = None if args.no_compress else {"method": "gzip", "mtime": 0, "compresslevel": 1}
            lines.to_csv(path, index=False, compression=compression)
        written += len(lines)
        print(f"shard {k + 1}/{len(shards.sizes)}: {len(lines):,} lines to {path.name}", flush=True)
    _write_reference(args, raw, f"transactions-*{suffix}", shards.products, shards.inventory(), written)


def _write_reference(args, raw: Path, tx_file: str, products, inventory, lines: int) -> None:
    products.to_csv(raw / "products.csv", index=False)
    inventory.to_csv(raw / "inventory.csv", index=False)
    spec = sources_yaml(tx_file, args.start, args.end)
    with open(args.out / "sources.yaml", "w") as fh:
        fh.write(
            "# Generated by: python -m mlops_assets.sample_data "
            f"--lines {args.lines} --seed {args.seed} --out {args.out}\n"
        )
        yaml.safe_dump(spec, fh, sort_keys=False)
    print(
        f"wrote {lines:,} order lines, {len(products)} products, {len(inventory):,} inventory rows to {raw}"
    )


if __name__ == "__main__":
    main()
