"""Serving latency: GET /v1/customers/{id} of `mlops-serve` at a fixed request rate, against a
bare uvicorn hello-world measured in the same run with the same load.

    python bench/bench_serve.py                      # builds a small sample, 1,000 rps for 20 s
    python bench/bench_serve.py --data-dir data --rate 1000 --seconds 30 --mode shadow

The load comes from a second process (this script re-run with --load): an open-loop generator
over keep-alive HTTP/1.1 connections that sends request i at start + i/rate whether or not
earlier answers came back, and measures each latency from the request's scheduled time, so a
stalled server cannot hide its queue (no coordinated omission). Prints p50/p95/p99, the achieved
rate and the errors of both servers, and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
HELLO = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"17")]})
    await send({"type": "http.response.body", "body": b'{"hello":"world"}'})
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, path: str, timeout: float = 120) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"nothing ready on port {port}{path} after {timeout} s")


# ---- the load generator (the second process) ----


async def _one(reader, writer, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def _load(port: int, paths: list[str], rate: float, seconds: float, connections: int) -> dict:
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    n = int(rate * seconds)
    latencies = np.full(n, np.nan)
    statuses = np.zeros(n, dtype=int)
    clock = time.perf_counter  # uvloop's loop.time() counts whole milliseconds
    start = clock() + 0.1

    async def fire(i: int, path: str) -> None:
        scheduled = start + i / rate
        conn = await pool.get()
        try:
            statuses[i] = await _one(*conn, f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            statuses[i] = -1
            conn = await asyncio.open_connection("127.0.0.1", port)
        latencies[i] = clock() - scheduled
        pool.put_nowait(conn)

    tasks = []
    for i in range(n):
        delay = start + i / rate - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(fire(i, paths[i % len(paths)])))
    await asyncio.gather(*tasks)
    elapsed = clock() - start
    ms = latencies * 1000
    return {
        "requests": n,
        "rate": n / elapsed,
        "p50": float(np.percentile(ms, 50)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
        "errors": int((statuses != 200).sum()),
    }


def load_main(args) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    paths = json.loads(Path(args.paths).read_text())
    print(json.dumps(asyncio.run(_load(args.load, paths, args.rate, args.seconds, args.connections))))


def run_load(port: int, paths: list[str], rate: float, seconds: float, connections: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(paths, fh)
    cmd = [sys.executable, __file__, "--load", str(port), "--paths", fh.name, "--rate", str(rate),
           "--seconds", str(seconds), "--connections", str(connections)]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    os.unlink(fh.name)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- the benchmark ----


def sample_dir(tmp: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    import dagster as dg

    from mlops_assets_tests.conftest import SMALL, generate_small, run_graph

    out = generate_small(tmp / "data")
    with dg.instance_for_test() as instance:
        if not run_graph(out, SMALL["start"], SMALL["end"], instance=instance).success:
            raise RuntimeError("the sample build failed")
    return out


def cdnow_dir(tmp: Path) -> Path:
    """CDNOW's real order log (23,570 customers, 1997-01..1998-06) as a data directory, built."""
    sys.path.insert(0, str(ROOT))
    import dagster as dg
    import yaml

    from mlops_assets_tests.conftest import run_graph
    from mlops_assets_tests.realdata import cdnow_lines

    out = tmp / "cdnow"
    (out / "raw").mkdir(parents=True)
    cdnow_lines().drop(columns=["amount"]).to_csv(out / "raw" / "cdnow.csv", index=False)
    columns = ["order_id", "order_ts", "customer_id", "product_id", "store_id", "quantity", "unit_price"]
    spec = {
        "transactions": {"path": "raw/cdnow.csv", "columns": {c: c for c in columns}},
        "window": {"start_date": "1997-01-01", "end_date": "1998-06-30"},
        "forecast": {"levels": ["total"]},
    }
    (out / "sources.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    with dg.instance_for_test() as instance:
        result = run_graph(out, "1997-01-01", "1998-06-30", instance=instance)
    failed = [e.step_key for e in result.get_step_failure_events()]
    print(f"CDNOW build: {'succeeded' if result.success else 'failed steps ' + ', '.join(failed)}")
    return out


def customer_ids(data_dir: Path) -> list[str]:
    sys.path.insert(0, str(ROOT))
    from mlops_assets.core.warehouse import read_table
    from mlops_assets.settings import load_settings

    table = read_table(load_settings(data_dir).warehouse_path, "features.customer_features")
    return table["customer_id"].astype(str).tolist()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir")
    p.add_argument("--cdnow", action="store_true", help="serve CDNOW's real customers (built first)")
    p.add_argument("--rate", type=float, default=1000)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--mode", default="shadow", choices=["champion", "shadow", "canary"])
    p.add_argument("--load", type=int, help=argparse.SUPPRESS)
    p.add_argument("--paths", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.load:
        return load_main(args)
    tmp = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    procs = []
    try:
        data_dir = Path(args.data_dir) if args.data_dir else cdnow_dir(tmp) if args.cdnow else sample_dir(tmp)
        ids = customer_ids(data_dir)
        print(f"{len(ids)} customers in {data_dir}")
        rng = random.Random(0)
        paths = [f"/v1/customers/{rng.choice(ids)}" for _ in range(5000)]
        env = {**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
        hello_port, serve_port = free_port(), free_port()
        (tmp / "hello.py").write_text(HELLO)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "hello:app", "--port", str(hello_port), "--log-level",
             "warning", "--no-access-log"], cwd=tmp, env=env))  # fmt: skip
        procs.append(subprocess.Popen(
            [shutil.which("mlops-serve") or "mlops-serve", "--data-dir", str(data_dir), "--port",
             str(serve_port), "--mode", args.mode], env=env))  # fmt: skip
        wait_ready(hello_port, "/")
        wait_ready(serve_port, "/ready")
        run_load(serve_port, paths, args.rate, 3, args.connections)  # warm-up
        run_load(hello_port, ["/"], args.rate, 3, args.connections)
        results = {
            "uvicorn hello-world": run_load(hello_port, ["/"], args.rate, args.seconds, args.connections),
            f"mlops-serve /v1/customers/{{id}} ({args.mode})": run_load(
                serve_port, paths, args.rate, args.seconds, args.connections
            ),
        }
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
    print(
        f"{args.rate:.0f} requests/s offered for {args.seconds:.0f} s from a second process, "
        f"{args.connections} keep-alive connections, latency from each request's scheduled time"
    )
    print(f"{'server':48s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} {'rate/s':>8s} {'errors':>7s}")
    for name, r in results.items():
        print(f"{name:48s} {r['p50']:8.2f} {r['p95']:8.2f} {r['p99']:8.2f} {r['rate']:8.0f} {r['errors']:7d}")
    base, served = results.values()
    print(f"p95 ratio (service / hello-world): {served['p95'] / base['p95']:.2f}x; "
          f"p50 ratio {served['p50'] / base['p50']:.2f}x; p95 target <= 10 ms: "
          + ("met" if served["p95"] <= 10 and served["errors"] == 0 else "NOT met"))  # fmt: skip
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
