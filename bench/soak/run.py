#!/usr/bin/env python3
"""Soak and scaling of several nodes: three `tverr serve` nodes on one PostgreSQL catalogue and one
S3 bucket (moto), the same set-up as the crash and fault checker (tests/cluster/cluster.py).

  soak     --minutes M of mixed traffic spread over the three nodes by a closed loop of --clients
           workers: SQL reads under an agreement, REST pages of rows, look-ups of a person,
           appends of 100 rows, and password log-ins. Every minute it prints the requests, the
           errors (any answer but the expected one) and p50/p99 latency; every 10 s it reads each
           node's RSS (/proc/PID/status). At the end: errors (target 0), p99 over time, and each
           node's RSS at the start and the end (target: flat).
  scaling  --seconds S of the read mix (no writes) against 1, 2 and 3 nodes, in the order
           1 2 3 3 2 1, each node count's median throughput and its ratio to one node.

Not run in CI. Run it with the release binary:

  cargo build --release -p tverr-cli
  python3 bench/soak/run.py --tverr ~/.cache/tverr-target/release/tverr --minutes 60
  python3 bench/soak/run.py --tverr ~/.cache/tverr-target/release/tverr --mode scaling
"""
from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import pathlib
import random
import statistics
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "cluster"))

DATASET = "kommune/hendelser"
PURPOSE = "oppfolging"
PASSWORD = "soak-passord-2026"
# The mix: (kind, weight). Reads dominate, as on a municipality's service desk.
MIX = [("sql", 30), ("rows", 25), ("lookup", 25), ("append", 10), ("login", 10)]
READS = [("sql", 35), ("rows", 30), ("lookup", 35)]


def person(i: int) -> str:
    from run import person as p  # the cluster test's synthetic fødselsnummer
    return p(i)


def csv_rows(start: int, n: int) -> bytes:
    from run import csv_rows as rows
    return rows(start, n)


def rss_kib(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


class Load:
    """The requests, made over one kept-alive connection per worker and node."""

    def __init__(self, cluster, steward: str, readers: list[str], people: int):
        self.c = cluster
        self.steward = steward
        # One reader per worker: a principal may run only a few queries at once on a node.
        self.readers = readers
        self.people = people
        self.next_id = 10_000_000
        self.lock = threading.Lock()
        self.local = threading.local()

    def conn(self, node) -> http.client.HTTPConnection:
        conns = getattr(self.local, "conns", None)
        if conns is None:
            conns = self.local.conns = {}
        if node.port not in conns:
            conns[node.port] = http.client.HTTPConnection("127.0.0.1", node.port, timeout=120)
        return conns[node.port]

    def call(self, node, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, bytes]:
        for attempt in range(2):
            c = self.conn(node)
            try:
                c.request(method, path, body=body, headers=headers)
                r = c.getresponse()
                return r.status, r.read()
            except (http.client.HTTPException, OSError):
                c.close()
                del self.local.conns[node.port]
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def one(self, kind: str, node, rng: random.Random) -> tuple[int, bool]:
        read = {"Authorization": f"Bearer {self.readers[self.local.worker % len(self.readers)]}", "Tverr-Purpose": PURPOSE}
        if kind == "sql":
            q = json.dumps({"sql": f"SELECT count(*) AS n, sum(verdi) AS s FROM {DATASET.replace('/', '.')} WHERE verdi < {rng.randint(1, 96)}"})
            status, _ = self.call(node, "POST", "/api/v1/sql", q.encode(), {**read, "Content-Type": "application/json"})
            return status, status == 200
        if kind == "rows":
            status, _ = self.call(node, "GET", f"/api/v1/datasets/{DATASET}/rows?limit=50&where=verdi%3D{rng.randint(0, 96)}", None, read)
            return status, status == 200
        if kind == "lookup":
            status, _ = self.call(node, "GET", f"/api/v1/subjects/person/{person(rng.randint(1, self.people))}", None, read)
            return status, status == 200
        if kind == "append":
            with self.lock:
                start = self.next_id
                self.next_id += 100
            status, _ = self.call(node, "POST", f"/api/v1/datasets/{DATASET}/versions?mode=append", csv_rows(start, 100),
                                  {"Authorization": f"Bearer {self.steward}", "Content-Type": "text/csv"})
            return status, status == 200
        if kind == "login":
            body = json.dumps({"username": "soak", "password": PASSWORD}).encode()
            status, _ = self.call(node, "POST", "/api/v1/login", body, {"Content-Type": "application/json"})
            return status, status == 201
        raise ValueError(kind)


def pick(mix: list[tuple[str, int]], rng: random.Random) -> str:
    return rng.choices([k for k, _ in mix], weights=[w for _, w in mix])[0]


def drive(load: Load, nodes: list, mix, seconds: float, clients: int, seed: int, on_result=None) -> list[tuple]:
    """A closed loop: `clients` workers, each sending its next request when the last is answered,
    to the nodes in turn. Returns (time, kind, node, status, ok, seconds) per request."""
    results: list[tuple] = []
    guard = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker(w: int):
        load.local.worker = w
        rng = random.Random(seed * 1000 + w)
        i = w
        while time.monotonic() < stop_at:
            kind = pick(mix, rng)
            node = nodes[i % len(nodes)]
            i += 1
            started = time.monotonic()
            try:
                status, ok = load.one(kind, node, rng)
            except Exception:  # noqa: BLE001 - a connection that failed is an error
                status, ok = 0, False
            row = (started, kind, node.index, status, ok, time.monotonic() - started)
            with guard:
                results.append(row)
            if on_result:
                on_result(row)

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    return results


def setup(cluster, people: int, readers: int) -> tuple[str, list[str]]:
    t = cluster.tverr
    t("org", "create", "kommune", "--name", "Testkommune", "--orgnr", "970540008", "--kommunenummer", "3403")
    t("department", "create", "kommune/data", "--name", "Data")
    t("department", "create", "kommune/lesere", "--name", "Lesere")
    t("user", "create", "kommune/data/forvalter", "--role", "steward")
    for r in range(readers):
        t("user", "create", f"kommune/lesere/leser{r}", "--role", "employee")
    t("user", "create", "kommune/lesere/soak", "--role", "employee", "--password-stdin", stdin=PASSWORD.encode())
    t("user", "create", "kommune/admin", "--role", "admin")
    steward = t("token", "create", "--user", "forvalter").stdout.decode().strip()
    tokens = [t("token", "create", "--user", f"leser{r}").stdout.decode().strip() for r in range(readers)]
    t("legal-basis", "create", "kommune/lov", "--gdpr", "6(1)(e)", "--hjemmel", "kommuneloven § 1-1")
    t("purpose", "create", f"kommune/{PURPOSE}", "--name", "Oppfølging", "--department", "lesere", "--legal-basis", "lov")
    first = cluster.work / "first.csv"
    first.write_bytes(csv_rows(1, people))
    t("ingest", DATASET, str(first), "--create", "--department", "data", "--title", "Hendelser",
      "--classification", "internal", "--subject", "fodselsnummer=person")
    out = t("agreement", "request", "--as", "admin", "--provider", "kommune/data", "--consumer", "kommune/lesere",
            "--dataset", DATASET, "--columns", "id,fodselsnummer,verdi", "--purpose", PURPOSE).stdout.decode()
    agreement = next(w for w in out.replace(":", " ").split() if w.isdigit())
    t("agreement", "approve", agreement, "--as", "forvalter")
    return steward, tokens


def soak(cluster, load: Load, minutes: float, clients: int, seed: int) -> dict:
    nodes = cluster.nodes
    rss: list[tuple[float, list[int]]] = []
    done = threading.Event()
    t0 = time.monotonic()

    def sample():
        while not done.is_set():
            rss.append((time.monotonic() - t0, [rss_kib(n.proc.pid) for n in nodes]))
            done.wait(10)

    minute: dict[int, list[tuple]] = {}
    printed = {"upto": 0}
    guard = threading.Lock()

    def on_result(row):
        with guard:
            m = int((row[0] - t0) // 60)
            minute.setdefault(m, []).append(row)
            while printed["upto"] < m:
                rows = minute.get(printed["upto"], [])
                lat = [r[5] for r in rows]
                errors = sum(1 for r in rows if not r[4])
                print(f"minute {printed['upto'] + 1:3d}: {len(rows):6d} requests, {errors} errors, "
                      f"p50 {pct(lat, 50) * 1000:7.1f} ms, p99 {pct(lat, 99) * 1000:7.1f} ms, "
                      f"RSS MiB {[round(k / 1024) for k in rss[-1][1]] if rss else '?'}", flush=True)
                printed["upto"] += 1

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    results = drive(load, nodes, MIX, minutes * 60, clients, seed, on_result)
    done.set()
    sampler.join()
    rss.append((time.monotonic() - t0, [rss_kib(n.proc.pid) for n in nodes]))
    errors = [r for r in results if not r[4]]
    by_kind = {}
    for kind, _ in MIX:
        lat = [r[5] for r in results if r[1] == kind]
        by_kind[kind] = {"requests": len(lat), "errors": sum(1 for r in results if r[1] == kind and not r[4]),
                         "p50_ms": round(pct(lat, 50) * 1000, 1), "p99_ms": round(pct(lat, 99) * 1000, 1)}
    per_minute = []
    for m in sorted(minute):
        rows = minute[m]
        lat = [r[5] for r in rows]
        per_minute.append({"minute": m + 1, "requests": len(rows), "errors": sum(1 for r in rows if not r[4]),
                           "p99_ms": round(pct(lat, 99) * 1000, 1)})
    # RSS after the first minute (caches and pools filled) against the end.
    warm = next((s for s in rss if s[0] >= 60), rss[0])
    return {
        "minutes": minutes, "clients": clients, "requests": len(results), "errors": len(errors),
        "error_statuses": sorted({r[3] for r in errors}), "by_kind": by_kind, "per_minute": per_minute,
        "rss_mib": {"start": [round(k / 1024, 1) for k in rss[0][1]], "after_1_min": [round(k / 1024, 1) for k in warm[1]],
                    "end": [round(k / 1024, 1) for k in rss[-1][1]]},
    }


def scaling(cluster, load: Load, seconds: float, clients: int, seed: int) -> dict:
    order = [1, 2, 3, 3, 2, 1]
    got: dict[int, list[float]] = {1: [], 2: [], 3: []}
    for i, n in enumerate(order):
        results = drive(load, cluster.nodes[:n], READS, seconds, clients, seed + i)
        ok = sum(1 for r in results if r[4])
        bad = len(results) - ok
        rate = ok / seconds
        got[n].append(rate)
        print(f"{n} node(s): {rate:7.1f} requests/s ({bad} errors)", flush=True)
    medians = {n: statistics.median(v) for n, v in got.items()}
    return {"seconds": seconds, "clients": clients, "order": order, "runs": got, "median": medians,
            "ratio_to_one": {n: round(medians[n] / medians[1], 2) for n in medians}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tverr", required=True, help="the tverr binary (release)")
    p.add_argument("--mode", choices=["soak", "scaling"], default="soak")
    p.add_argument("--minutes", type=float, default=60)
    p.add_argument("--seconds", type=float, default=60, help="each scaling run")
    p.add_argument("--clients", type=int, default=12)
    p.add_argument("--people", type=int, default=20_000, help="rows (and people) in the dataset at the start")
    p.add_argument("--seed", type=int, default=3403)
    p.add_argument("--out", help="write the figures as JSON here")
    a = p.parse_args()
    os.environ["TVERR_BIN"] = str(pathlib.Path(a.tverr).resolve())
    from cluster import Cluster  # noqa: E402 - after TVERR_BIN is set
    work = pathlib.Path(tempfile.mkdtemp(prefix="tverr-soak."))
    c = Cluster(work)
    print(f"soak in {work}: {a.mode}, {a.clients} clients", flush=True)
    try:
        c.start_services()
        steward, readers = setup(c, a.people, a.clients)
        c.start_nodes()
        load = Load(c, steward, readers, a.people)
        figures = soak(c, load, a.minutes, a.clients, a.seed) if a.mode == "soak" else scaling(c, load, a.seconds, a.clients, a.seed)
        verify = c.tverr("audit", "verify", check=False)
        figures["audit_verifies"] = verify.returncode == 0
    finally:
        c.stop()
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(figures, indent=2)
    print(text)
    if a.out:
        pathlib.Path(a.out).write_text(text)
    return 0 if figures.get("errors", 0) == 0 and figures["audit_verifies"] else 1


if __name__ == "__main__":
    sys.exit(main())
