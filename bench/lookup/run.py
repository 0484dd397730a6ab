#!/usr/bin/env python3
"""Person look-ups at national scale, against PostgreSQL on the same data in the same run.

1. The demo municipality with --persons N (default 5,500,000, Norway's population), built once
   into --data (kept between runs).
2. Tverr: `GET /api/v1/subjects/person/{fnr}` as the service desk (tove, purpose
   innbyggerservice), which reads every person dataset the desk has agreements for, follows the
   related subjects one hop (a guardian's children, a person's properties), applies the masks,
   row filters and address protection, and writes the access log (durable, SQLite catalogue).
3. PostgreSQL (the machine's, a private cluster on loopback): the same tables (exported through
   `tverr export`), a B-tree index on every subject-key column, and the same look-up done the
   plain way: one indexed SELECT per person dataset, then one per related subject and dataset.
   No policy, no masks, no log.

The same keys (a random sample of the population, every one warmed once first) go to both, from
the same client (`--clients` threads, keep-alive connections), for `--seconds` each, alternating
`--rounds` times. Prints p50, p99, look-ups/s and the CPU time per look-up of server and client
for both, and the ratios.

Usage: python3 bench/lookup/run.py --tverr ~/.cache/tverr-target/release/tverr [--persons 5500000]
Needs: PostgreSQL (Debian postgresql) and bench/lookup/requirements.txt (psycopg).
"""
import argparse
import http.client
import json
import os
import pathlib
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psycopg

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from common import free_port  # noqa: E402

# The desk's person datasets and their person key columns; property datasets and their key.
PERSON = {
    "hamar.innbyggere": ["fodselsnummer"],
    "hamar.barnehageplasser": ["barn_fnr", "foresatt_fnr"],
    "hamar.byggesaker": ["soker_fnr"],
    "hamar.eiendommer": ["eier_fnr"],
    "hamar.hjemmetjenester": ["fodselsnummer"],
}
PROPERTY = {"hamar.byggesaker": "matrikkel", "hamar.eiendommer": "matrikkel", "hias.vannmalere": "matrikkel"}


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def tverr(binary, data, *args, capture=True):
    env = dict(os.environ, TVERR_DATA=str(data), TVERR_PURPOSE="benchmark", TVERR_ACTOR="bench")
    out = subprocess.run([binary, *args], env=env, check=True, capture_output=capture, text=True)
    return out.stdout


def ensure_demo(binary, data, persons):
    if (data / "catalog.db").exists():
        print(f"using the demo in {data}")
        return
    data.mkdir(parents=True, exist_ok=True)
    t = time.time()
    print(f"creating the demo with {persons:,} persons in {data} …", flush=True)
    tverr(binary, data, "demo", "--persons", str(persons), capture=False)
    print(f"  {time.time() - t:.0f} s")


def start_pg(work):
    pg_bin = sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    as_pg = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    if os.getuid() == 0:
        shutil.chown(work, "postgres")
    port = free_port()
    run(as_pg + [str(pg_bin / "initdb"), "-D", f"{work}/pg", "-A", "trust", "-U", "postgres", "--no-sync"], stdout=subprocess.DEVNULL)
    run(as_pg + [str(pg_bin / "pg_ctl"), "-D", f"{work}/pg", "-o",
                 f"-p {port} -k {work} -c listen_addresses=127.0.0.1 -c shared_buffers=2GB -c fsync=off",
                 "-l", f"{work}/pg.log", "-w", "start"], stdout=subprocess.DEVNULL)
    stop = lambda: subprocess.run(as_pg + [str(pg_bin / "pg_ctl"), "-D", f"{work}/pg", "-m", "fast", "stop"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid = int(pathlib.Path(f"{work}/pg/postmaster.pid").read_text().split()[0])
    return f"postgresql://postgres@127.0.0.1:{port}/postgres", stop, pid


def copy_table(binary, data, conn, table, work):
    """Exports `table` (org.name) from Tverr as CSV and copies it into PostgreSQL as text
    columns; returns the column names."""
    org, name = table.split(".")
    csv_path = pathlib.Path(work) / f"{name}.csv"
    tverr(binary, data, "export", f"{org}/{name}", "--format", "csv", "--out", str(csv_path))
    with open(csv_path, encoding="utf-8") as f:
        header = f.readline().strip().split(",")
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {org}")
    conn.execute(f"CREATE TABLE {table} ({', '.join(f'{c} text' for c in header)})")
    with conn.cursor() as cur, open(csv_path, "rb") as f:
        with cur.copy(f"COPY {table} FROM STDIN (FORMAT csv, HEADER true)") as copy:
            while chunk := f.read(1 << 20):
                copy.write(chunk)
    csv_path.unlink()
    return header


def load_pg(binary, data, url, work):
    with psycopg.connect(url, autocommit=True) as conn:
        for table in sorted(set(PERSON) | set(PROPERTY)):
            t = time.time()
            copy_table(binary, data, conn, table, work)
            keys = set(PERSON.get(table, [])) | ({PROPERTY[table]} if table in PROPERTY else set())
            for k in sorted(keys):
                conn.execute(f"CREATE INDEX ON {table} ({k})")
            conn.execute(f"VACUUM ANALYZE {table}")
            rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            print(f"  PostgreSQL {table}: {rows:,} rows, indexed on {', '.join(sorted(keys))} ({time.time() - t:.0f} s)", flush=True)


def sample_keys(binary, data, n, seed):
    out = tverr(binary, data, "sql", "--format", "csv",
                "SELECT fodselsnummer FROM hamar.innbyggere")
    keys = out.split("\n")[1:]
    keys = [k for k in keys if k]
    random.Random(seed).shuffle(keys)
    # A fifth of the sample are guardians of children in kindergarten (more datasets per look-up).
    guardians = tverr(binary, data, "sql", "--format", "csv", "SELECT DISTINCT foresatt_fnr FROM hamar.barnehageplasser").split("\n")[1:]
    guardians = [g for g in guardians if g]
    random.Random(seed + 1).shuffle(guardians)
    return keys[: n - n // 5] + guardians[: n // 5]


class TverrClient:
    def __init__(self, port, token):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}", "Tverr-Purpose": "innbyggerservice"}

    def lookup(self, key):
        self.conn.request("GET", f"/api/v1/subjects/person/{key}", headers=self.headers)
        r = self.conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"{r.status}: {body[:300]!r}")
        return json.loads(body)


class PgClient:
    def __init__(self, url):
        self.conn = psycopg.connect(url, autocommit=True)
        self.person = [(t, f"SELECT * FROM {t} WHERE " + " OR ".join(f"{c} = %s" for c in cols), len(cols)) for t, cols in PERSON.items()]
        self.property = [(t, f"SELECT * FROM {t} WHERE {c} = %s") for t, c in PROPERTY.items()]

    def lookup(self, key):
        found = {}
        related = set()
        with self.conn.cursor() as cur:
            for table, sql, n in self.person:
                cur.execute(sql, [key] * n, prepare=True)
                rows = cur.fetchall()
                if rows:
                    names = [d.name for d in cur.description]
                    found[table] = [dict(zip(names, r)) for r in rows]
                    for row in found[table]:
                        for c in ("barn_fnr", "foresatt_fnr", "fodselsnummer", "eier_fnr", "soker_fnr"):
                            if row.get(c) and row[c] != key:
                                related.add(("person", row[c]))
                        if row.get("matrikkel"):
                            related.add(("property", row["matrikkel"]))
            for kind, value in sorted(related)[:20]:
                queries = [(t, s, n) for t, s, n in self.person] if kind == "person" else [(t, s, 1) for t, s in self.property]
                for table, sql, n in queries:
                    cur.execute(sql, [value] * n, prepare=True)
                    rows = cur.fetchall()
                    if rows:
                        found.setdefault(f"{kind}:{value}:{table}", rows)
        return found


def _stat(pid):
    return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid):
    """CPU time (user + system) a process and the children it has reaped have used so far, plus
    that of its live children (PostgreSQL's backends), from /proc."""
    f = _stat(pid)
    total = sum(int(f[i]) for i in (11, 12, 13, 14))
    for d in pathlib.Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                c = _stat(d.name)
            except OSError:
                continue
            if int(c[1]) == pid:
                total += sum(int(c[i]) for i in (11, 12, 13, 14))
    return total / os.sysconf("SC_CLK_TCK")


def measure(make_client, keys, clients, seconds, pid):
    """Look-ups per second and latency percentiles over `seconds`, `clients` threads, and the CPU
    time per look-up of the server (`pid` and its children) and of this client (steadier than the
    rate on a shared machine)."""
    latencies = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds
    errors = []

    def worker(i):
        client = make_client()
        own = []
        j = i
        while time.perf_counter() < stop_at:
            key = keys[j % len(keys)]
            j += clients
            t = time.perf_counter()
            try:
                client.lookup(key)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(str(e))
                return
            own.append(time.perf_counter() - t)
        with lock:
            latencies.extend(own)

    cpu = cpu_seconds(pid)
    client_cpu = time.process_time()
    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(errors[0])
    latencies.sort()
    q = statistics.quantiles(latencies, n=100)
    n = len(latencies)
    return {"rate": n / elapsed, "p50": q[49] * 1000, "p99": q[98] * 1000, "n": n,
            "cpu_ms": (cpu_seconds(pid) - cpu) * 1000 / n,
            "client_cpu_ms": (time.process_time() - client_cpu) * 1000 / n}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tverr", required=True)
    ap.add_argument("--persons", type=int, default=5_500_000)
    ap.add_argument("--data", default="/var/tmp/tverr-lookup-bench")
    ap.add_argument("--keys", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--tverr-only", action="store_true", help="skip PostgreSQL (for profiling Tverr alone)")
    args = ap.parse_args()
    data = pathlib.Path(args.data) / str(args.persons)
    ensure_demo(args.tverr, data, args.persons)
    keys = sample_keys(args.tverr, data, args.keys, args.seed)
    print(f"{len(keys)} keys sampled")

    work = tempfile.mkdtemp(prefix="tverr-lookup-bench-")
    url, stop_pg, pg_pid = start_pg(work)
    port = free_port()
    env = dict(os.environ, TVERR_DATA=str(data))
    server = subprocess.Popen([args.tverr, "serve", "--listen", f"127.0.0.1:{port}"], env=env,
                              stdout=subprocess.DEVNULL, stderr=open(f"{work}/tverr.log", "w"))
    try:
        if not args.tverr_only:
            print("loading PostgreSQL …", flush=True)
            load_pg(args.tverr, data, url, work)
        token = tverr(args.tverr, data, "token", "create", "--user", "tove").strip()
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        # Warm both: every key once (file footers, page cache, PostgreSQL buffers).
        t, p = TverrClient(port, token), PgClient(url)
        datasets_seen = 0
        for k in keys:
            found = t.lookup(k)
            datasets_seen += sum(len(d["datasets"]) for o in found["organizations"] for d in o["departments"])
            if not args.tverr_only:
                p.lookup(k)
        print(f"warmed: {datasets_seen / len(keys):.2f} datasets per look-up on average (direct)")
        results = {"tverr": []} if args.tverr_only else {"tverr": [], "postgres": []}
        for r in range(args.rounds):
            results["tverr"].append(measure(lambda: TverrClient(port, token), keys, args.clients, args.seconds, server.pid))
            if args.tverr_only:
                print(f"round {r + 1}: tverr {results['tverr'][-1]}", flush=True)
                continue
            results["postgres"].append(measure(lambda: PgClient(url), keys, args.clients, args.seconds, pg_pid))
            print(f"round {r + 1}: tverr {results['tverr'][-1]}, postgres {results['postgres'][-1]}", flush=True)
        med = {k: {m: statistics.median(x[m] for x in v) for m in ("rate", "p50", "p99")} for k, v in results.items()}
        print(f"\nperson look-ups, {args.persons:,} persons, {args.clients} clients, median of {args.rounds} rounds of {args.seconds:.0f} s:")
        for k in results:
            cpu = statistics.median(x["cpu_ms"] for x in results[k])
            client = statistics.median(x["client_cpu_ms"] for x in results[k])
            print(f"  {k:9} {med[k]['rate']:8.0f} look-ups/s   p50 {med[k]['p50']:6.2f} ms   p99 {med[k]['p99']:6.2f} ms"
                  f"   CPU per look-up: server {cpu:.2f} ms, client {client:.2f} ms")
        if args.tverr_only:
            return 0
        print(f"  Tverr/PostgreSQL throughput {med['tverr']['rate'] / med['postgres']['rate']:.2f}×, "
              f"p99 {med['tverr']['p99'] / med['postgres']['p99']:.2f}×")
    finally:
        server.terminate()
        server.wait()
        stop_pg()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
