#!/usr/bin/env python3
"""The building-case page for one property, against PostgreSQL + PostGIS on the same data.

1. The demo municipality with --persons N (default 5,500,000), built once into --data.
2. Tverr: the page's two reads as the case worker `ola` with the purpose byggesaksbehandling:
   `GET /api/v1/properties/{matrikkel}` (the property's rows in every dataset keyed by it, through
   the subject index and each secure scan; its parcel; the zoning plans whose plan area meets it,
   with ST_Intersection for the share) and `GET /api/v1/properties/{matrikkel}/neighbours?within=50`
   (the parcels within 50 m with their owners), every read in the access log.
3. PostgreSQL 15 + PostGIS 3.3 (Debian's; a private cluster on loopback): the same tables
   (exported through `tverr export`), B-tree indexes on the keys and GiST indexes on the
   geometries, and the same page the plain way: the property from three tables by key, the plans
   by ST_Intersects with ST_Area(ST_Intersection(…)), the neighbours by ST_DWithin. No policy, no
   masks, no log.

The same properties (random, owners without address protection; each warmed once) go to both,
one client, alternating --rounds times for --seconds each. Prints p50 and p99 of the whole page
(both reads) for each, the ratio, and Tverr's two reads apart.

Usage: python3 bench/services/run.py --tverr ~/.cache/tverr-target/release/tverr [--persons 5500000]
Needs: postgresql-15 and postgresql-15-postgis-3 (Debian) and psycopg (bench/lookup/requirements.txt).
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
import time

import psycopg

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from common import free_port  # noqa: E402
from lookup.run import copy_table, ensure_demo, start_pg, tverr  # noqa: E402

WITHIN = 50
TABLES = {
    "hamar.eiendommer": "geometry",
    "hamar.reguleringsplaner": "geometry",
    "hamar.byggesaker": None,
    "hias.vannmalere": None,
}


def load_pg(binary, data, url, work):
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        for table, geometry in TABLES.items():
            t = time.time()
            header = copy_table(binary, data, conn, table, work)
            if geometry:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN geom geometry")
                conn.execute(f"UPDATE {table} SET geom = ST_GeomFromText({geometry}, 25833) WHERE {geometry} <> ''")
                conn.execute(f"CREATE INDEX ON {table} USING gist (geom)")
            if "matrikkel" in header:
                conn.execute(f"CREATE INDEX ON {table} (matrikkel)")
            conn.execute(f"VACUUM ANALYZE {table}")
            rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            print(f"  PostgreSQL {table}: {rows:,} rows ({time.time() - t:.0f} s)", flush=True)


class TverrPage:
    def __init__(self, port, token):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {"Authorization": f"Bearer {token}", "Tverr-Purpose": "byggesaksbehandling"}
        self.parts = {"property": [], "neighbours": []}

    def get(self, path):
        t = time.perf_counter()
        self.conn.request("GET", path, headers=self.headers)
        r = self.conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"{path}: {r.status}: {body[:300]!r}")
        return json.loads(body), time.perf_counter() - t

    def page(self, matrikkel):
        view, a = self.get(f"/api/v1/properties/{matrikkel}")
        near, b = self.get(f"/api/v1/properties/{matrikkel}/neighbours?within={WITHIN}")
        self.parts["property"].append(a)
        self.parts["neighbours"].append(b)
        return len(view["zoning"]), len(near["rows"])


class PgPage:
    def __init__(self, url):
        self.conn = psycopg.connect(url, autocommit=True)

    def page(self, matrikkel):
        with self.conn.cursor() as cur:
            for table in ("hamar.eiendommer", "hamar.byggesaker", "hias.vannmalere"):
                cur.execute(f"SELECT * FROM {table} WHERE matrikkel = %s", [matrikkel], prepare=True)
                cur.fetchall()
            cur.execute(
                "SELECT p.planid, p.plannavn, p.status, ST_Area(ST_Intersection(p.geom, e.geom)) / ST_Area(e.geom) "
                "FROM hamar.reguleringsplaner p, hamar.eiendommer e WHERE e.matrikkel = %s AND ST_Intersects(p.geom, e.geom)",
                [matrikkel],
                prepare=True,
            )
            plans = len(cur.fetchall())
            cur.execute(
                "SELECT n.matrikkel, n.adresse, n.eier_navn, n.eier_orgnr FROM hamar.eiendommer n, hamar.eiendommer e "
                "WHERE e.matrikkel = %s AND n.matrikkel <> e.matrikkel AND ST_DWithin(n.geom, e.geom, %s) ORDER BY n.matrikkel LIMIT 500",
                [matrikkel, WITHIN],
                prepare=True,
            )
            return plans, len(cur.fetchall())


def measure(page, keys, seconds):
    latencies = []
    stop = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < stop:
        t = time.perf_counter()
        page.page(keys[i % len(keys)])
        latencies.append(time.perf_counter() - t)
        i += 1
    q = statistics.quantiles(latencies, n=100)
    return {"n": len(latencies), "p50": q[49] * 1000, "p99": q[98] * 1000}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tverr", required=True)
    ap.add_argument("--persons", type=int, default=5_500_000)
    ap.add_argument("--data", default="/var/tmp/tverr-services-bench")
    ap.add_argument("--keys", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    data = pathlib.Path(args.data) / str(args.persons)
    ensure_demo(args.tverr, data, args.persons)
    out = tverr(args.tverr, data, "sql", "--format", "csv",
                "SELECT e.matrikkel FROM hamar.eiendommer e JOIN hamar.innbyggere i ON i.fodselsnummer = e.eier_fnr "
                "WHERE i.adressebeskyttelse = 'ugradert'")
    keys = [k for k in out.split("\n")[1:] if k]
    random.Random(args.seed).shuffle(keys)
    keys = keys[: args.keys]
    print(f"{len(keys)} properties sampled")

    work = tempfile.mkdtemp(prefix="tverr-services-bench-")
    url, stop_pg, _ = start_pg(work)
    port = free_port()
    env = dict(os.environ, TVERR_DATA=str(data))
    server = subprocess.Popen([args.tverr, "serve", "--listen", f"127.0.0.1:{port}"], env=env,
                              stdout=subprocess.DEVNULL, stderr=open(f"{work}/tverr.log", "w"))
    try:
        print("loading PostgreSQL + PostGIS …", flush=True)
        load_pg(args.tverr, data, url, work)
        token = tverr(args.tverr, data, "token", "create", "--user", "ola").strip()
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        t, p = TverrPage(port, token), PgPage(url)
        found = {"tverr": [0, 0], "postgres": [0, 0]}
        for k in keys:
            for name, page in (("tverr", t), ("postgres", p)):
                plans, near = page.page(k)
                found[name][0] += plans
                found[name][1] += near
        for name, (plans, near) in found.items():
            print(f"warmed {name}: {plans / len(keys):.2f} plans and {near / len(keys):.2f} neighbours per property")
        t.parts = {"property": [], "neighbours": []}
        results = {"tverr": [], "postgres": []}
        for r in range(args.rounds):
            results["tverr"].append(measure(t, keys, args.seconds))
            results["postgres"].append(measure(p, keys, args.seconds))
            print(f"round {r + 1}: tverr {results['tverr'][-1]}, postgres {results['postgres'][-1]}", flush=True)
        med = {k: {m: statistics.median(x[m] for x in v) for m in ("p50", "p99")} for k, v in results.items()}
        print(f"\nthe building-case page (property + neighbours within {WITHIN} m), {args.persons:,} persons, "
              f"one client, median of {args.rounds} rounds of {args.seconds:.0f} s:")
        for k, m in med.items():
            print(f"  {k:9} p50 {m['p50']:7.2f} ms   p99 {m['p99']:7.2f} ms")
        for part, values in t.parts.items():
            q = statistics.quantiles(values, n=100)
            print(f"  tverr {part:10} p50 {q[49] * 1000:7.2f} ms   p99 {q[98] * 1000:7.2f} ms")
        print(f"  Tverr/PostgreSQL p50 {med['tverr']['p50'] / med['postgres']['p50']:.1f}×, "
              f"p99 {med['tverr']['p99'] / med['postgres']['p99']:.1f}×")
    finally:
        server.terminate()
        server.wait()
        stop_pg()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
