#!/usr/bin/env python3
"""API benchmark, one run on the same data (the 1 M-row benchmark table of bench/ingest):

(a) filtered JSON pages (100 rows where belop > 99000) via wrk: Tverr's REST rows route against
    Datasette serving the same rows from SQLite; requests per second, alternating rounds;
(b) one aggregate query: Tverr's `POST /api/v1/sql` (HTTP, JSON, audited path), DataFusion in
    process (the Python binding, over the table's Parquet files) and DuckDB in process (same
    files); median seconds.

The table is open, so both servers answer anonymous requests and do the same work per page.
Prints the figures and the ratios.

Usage: python3 bench/api/run.py [--rows 1000000] [--rounds 3] [--seconds 10] [--tverr PATH]
Needs: wrk (Debian), and bench/api/requirements.txt (datasette, datafusion, duckdb, pyarrow).
"""
import argparse
import http.client
import json
import os
import pathlib
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench" / "ingest"))
sys.path.insert(0, str(ROOT / "bench"))
import run as ingest_bench  # noqa: E402
from common import free_port, wait  # noqa: E402

AGGREGATE = ("SELECT postnummer, count(*) AS n, avg(belop) AS snitt, max(antall) AS mest "
             "FROM {table} GROUP BY postnummer ORDER BY postnummer")
TVERR_PAGE = "/api/v1/datasets/bench/innbyggere/rows?where=belop%20%3E%2099000&limit=100"
DATASETTE_PAGE = "/bench/innbyggere.json?belop__gt=99000&_size=100&_nocount=1&_shape=objects"


def wrk(url, seconds):
    out = subprocess.run(["wrk", "-t2", "-c8", f"-d{seconds}s", "--latency", url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"50%\s+([\d.]+)(\w+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} error responses")
    return rate, f"{p50.group(1)} {p50.group(2)}"


def sqlite_from_parquet(files, db):
    import pyarrow.parquet as pq
    con = sqlite3.connect(db)
    first = True
    for f in files:
        t = pq.read_table(f)
        cols = t.column_names
        if first:
            con.execute(f"CREATE TABLE innbyggere ({', '.join(cols)})")
            first = False
        rows = zip(*(t.column(c).to_pylist() for c in cols))
        con.executemany(f"INSERT INTO innbyggere VALUES ({', '.join('?' for _ in cols)})",
                        (tuple(str(v) if hasattr(v, 'isoformat') else v for v in r) for r in rows))
    con.commit()
    con.close()


def median_seconds(fn, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--tverr", default=None)
    args = ap.parse_args()
    binary, csv = ingest_bench.prepare(args.tverr, args.rows)
    work = pathlib.Path(tempfile.mkdtemp(prefix="tverr-api-bench-"))
    env = dict(os.environ, TVERR_DATA=str(work / "data"), TVERR_LOG="error")
    procs = []
    try:
        for step in (["org", "create", "bench", "--name", "Bench", "--orgnr", "970540008"],
                     ["department", "create", "bench/data", "--name", "Data"],
                     ["ingest", "bench/innbyggere", str(csv), "--create", "--department", "data", "--title", "Bench",
                      "--classification", "open"]):
            subprocess.run([binary, *step], env=env, check=True, capture_output=True)
        table_dir = work / "data" / "lake" / "bench" / "innbyggere"
        files = sorted(str(p) for p in table_dir.glob("*.parquet"))
        db = work / "bench.db"
        sqlite_from_parquet(files, db)

        tport, dport = free_port(), free_port()
        procs.append(subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{tport}", "--queries-per-principal", "64"],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen([sys.executable, "-m", "datasette", "serve", str(db), "-p", str(dport),
                                       "--setting", "sql_time_limit_ms", "60000", "--setting", "suggest_facets", "off"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        tverr_url, datasette_url = f"http://127.0.0.1:{tport}{TVERR_PAGE}", f"http://127.0.0.1:{dport}{DATASETTE_PAGE}"
        wait(tverr_url)
        wait(datasette_url)
        t_rows = json.load(urllib.request.urlopen(tverr_url))["rows"]
        d_rows = json.load(urllib.request.urlopen(datasette_url))["rows"]
        assert len(t_rows) == len(d_rows) == 100, (len(t_rows), len(d_rows))
        assert all(r["belop"] > 99000 for r in t_rows + d_rows)

        pages = {"tverr": [], "datasette": []}
        for _ in range(args.rounds):
            pages["tverr"].append(wrk(tverr_url, args.seconds))
            pages["datasette"].append(wrk(datasette_url, args.seconds))

        def via_api():
            c = http.client.HTTPConnection("127.0.0.1", tport)
            c.request("POST", "/api/v1/sql", json.dumps({"sql": AGGREGATE.format(table="bench.innbyggere")}),
                      {"Content-Type": "application/json"})
            r = c.getresponse()
            body = json.loads(r.read())
            assert r.status == 200 and len(body["rows"]) == 4, body
            return body["rows"]

        import datafusion
        import duckdb
        ctx = datafusion.SessionContext()
        ctx.register_parquet("innbyggere", str(table_dir), file_extension=".parquet")
        duck = duckdb.connect()
        duck.execute(f"CREATE VIEW innbyggere AS SELECT * FROM read_parquet('{table_dir}/*.parquet')")
        api_rows = via_api()
        df_rows = ctx.sql(AGGREGATE.format(table="innbyggere")).to_pylist()
        duck_n = [r[1] for r in duck.execute(AGGREGATE.format(table="innbyggere")).fetchall()]
        assert [r["n"] for r in api_rows] == [r["n"] for r in df_rows] == duck_n, "the three must agree"
        sql = {
            "tverr POST /api/v1/sql": median_seconds(via_api, args.runs),
            "DataFusion in process": median_seconds(lambda: ctx.sql(AGGREGATE.format(table="innbyggere")).collect(), args.runs),
            "DuckDB in process": median_seconds(lambda: duck.execute(AGGREGATE.format(table="innbyggere")).fetchall(), args.runs),
        }
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)

    print(f"table: {args.rows:,} rows, {len(files)} Parquet file(s); wrk -t2 -c8 -d{args.seconds}s, {args.rounds} rounds alternating")
    for side, runs in pages.items():
        rates = [r for r, _ in runs]
        print(f"(a) filtered page {side:<10} {statistics.median(rates):8.0f} req/s (rounds: {', '.join(f'{r:.0f}' for r in rates)}; "
              f"p50 latency {runs[len(runs) // 2][1]})")
    ratio = statistics.median([r for r, _ in pages["tverr"]]) / statistics.median([r for r, _ in pages["datasette"]])
    print(f"    Tverr / Datasette = {ratio:.2f}x (target >= 2)")
    for name, secs in sql.items():
        print(f"(b) aggregate {name:<26} {secs * 1000:8.1f} ms (median of {args.runs})")
    api = sql["tverr POST /api/v1/sql"]
    print(f"    API / DataFusion in process = {api / sql['DataFusion in process']:.2f} (target <= 1.15); "
          f"API / DuckDB = {api / sql['DuckDB in process']:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
