#!/usr/bin/env python3
"""The crash and fault checker: three `tverr serve` nodes on one PostgreSQL and one S3 bucket.

Phases (each prints what it checked; any failure ends the run with exit status 1):
  concurrent  appends of one dataset from every node at once: every version accounted for
  revoke      an agreement revoked on one node is refused by every node at the next request
  shutdown    SIGTERM during a write: the write is answered, then the node exits
  backup      tverr backup while every node appends; restored into SQLite and local files, the
              restored dataset is at one version with the rows its history accounts for
  stop        SIGSTOP of a node holding a write lock: after the lease another node writes; the
              stopped node, continued, commits nothing and cleans up after itself
  kills       kill -9 of a node (or a CLI process) at a random moment of a write, then the checker
  faults      PostgreSQL down, S3 answering 503 or slowly: 503 with Retry-After, then recovery

Usage: tests/cluster/run.py [--kills N] [--outage SECONDS] [--seed S] [--keep]
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import pathlib
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from cluster import LEASE_SECONDS, Cluster, tverr_bin, wait_for  # noqa: E402

DATASET = "kommune/hendelser"
PURPOSE = "oppfolging"


# What a node logs when it finishes a write a crash interrupted (crates/store/src/writing.rs).
RECOVERIES = {
    "versions recorded from the lake": "recorded a version committed to storage before the write was interrupted",
    "sweeps of left files": "deleted files an interrupted write left",
    "erasures finished": "finished the clean-up of an interrupted erasure",
}


class Failed(Exception):
    pass


def check(ok: bool, what: str):
    if not ok:
        raise Failed(what)


def csv_rows(start: int, n: int) -> bytes:
    lines = ["id,fodselsnummer,verdi"]
    for i in range(start, start + n):
        lines.append(f"{i},{person(i)},{i % 97}")
    return ("\n".join(lines) + "\n").encode()


def person(i: int) -> str:
    """A valid synthetic fødselsnummer (day + 80 in the month) for row `i`."""
    day, month, year = 1 + i % 28, 81 + (i // 28) % 12, 50 + (i // 336) % 50
    individ = 100 + (i // 16800) % 400
    base = f"{day:02d}{month:02d}{year:02d}{individ:03d}"
    d = [int(c) for c in base]
    k1 = 11 - sum(w * x for w, x in zip([3, 7, 6, 1, 8, 9, 4, 5, 2], d)) % 11
    k1 = 0 if k1 == 11 else k1
    if k1 == 10:
        return person(i + 100_000)
    d.append(k1)
    k2 = 11 - sum(w * x for w, x in zip([5, 4, 3, 2, 7, 6, 5, 4, 3, 2], d)) % 11
    k2 = 0 if k2 == 11 else k2
    if k2 == 10:
        return person(i + 100_000)
    return base + str(k1) + str(k2)


class Run:
    def __init__(self, c: Cluster, seed: int):
        self.c = c
        self.rng = random.Random(seed)
        self.next_id = 1_000_000
        self.steward = ""
        self.reader = ""

    # --- set-up ---------------------------------------------------------------------------------
    def setup(self):
        t = self.c.tverr
        t("org", "create", "kommune", "--name", "Testkommune", "--orgnr", "970540008", "--kommunenummer", "3403")
        t("department", "create", "kommune/data", "--name", "Data")
        t("department", "create", "kommune/lesere", "--name", "Lesere")
        t("user", "create", "kommune/data/forvalter", "--role", "steward")
        t("user", "create", "kommune/lesere/leser", "--role", "employee")
        t("user", "create", "kommune/admin", "--role", "admin")
        self.steward = t("token", "create", "--user", "forvalter").stdout.decode().strip()
        self.reader = t("token", "create", "--user", "leser").stdout.decode().strip()
        t("legal-basis", "create", "kommune/lov", "--gdpr", "6(1)(e)", "--hjemmel", "kommuneloven § 1-1")
        t("purpose", "create", f"kommune/{PURPOSE}", "--name", "Oppfølging", "--department", "lesere", "--legal-basis", "lov")
        first = self.c.work / "first.csv"
        first.write_bytes(csv_rows(1, 100))
        t("ingest", DATASET, str(first), "--create", "--department", "data", "--title", "Hendelser",
          "--classification", "internal", "--subject", "fodselsnummer=person")

    def agreement(self) -> int:
        out = self.c.tverr("agreement", "request", "--as", "admin", "--provider", "kommune/data", "--consumer", "kommune/lesere",
                           "--dataset", DATASET, "--columns", "id,verdi", "--purpose", PURPOSE).stdout.decode()
        agreement = int(next(w for w in out.replace(":", " ").split() if w.isdigit()))
        self.c.tverr("agreement", "approve", str(agreement), "--as", "forvalter")
        return agreement

    # --- helpers --------------------------------------------------------------------------------
    def append(self, node, n: int, timeout: float = 120) -> tuple[int, dict, bytes]:
        start = self.next_id
        self.next_id += n
        return node.request("POST", f"/api/v1/datasets/{DATASET}/versions?mode=append", csv_rows(start, n),
                                       {"Authorization": f"Bearer {self.steward}", "Content-Type": "text/csv"}, timeout)

    def read_count(self, node, timeout: float = 60) -> tuple[int, dict, bytes]:
        return node.request("POST", "/api/v1/sql", json.dumps({"sql": f"SELECT count(*) AS n FROM {DATASET.replace('/', '.')}"}).encode(),
                            {"Authorization": f"Bearer {self.reader}", "Tverr-Purpose": PURPOSE, "Content-Type": "application/json"},
                            timeout)

    def versions(self) -> list[dict]:
        rows = self.c.pg("SELECT version, mode, rows_written, rows_removed FROM dataset_versions "
                         "WHERE org = 'kommune' AND dataset = 'hendelser' ORDER BY version")
        return [{"version": int(v), "mode": m, "written": int(w), "removed": int(r)} for v, m, w, r in rows]

    def lake_versions(self) -> dict[int, str]:
        """The versions Tverr wrote that the Delta log still holds, with their mode, read by delta-rs
        (Python) straight from the bucket."""
        import deltalake
        opts = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.c.moto_port}", "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}
        table = deltalake.DeltaTable(f"s3://tverr-cluster/lake/{DATASET}", storage_options=opts)
        return {h["version"]: h["tverr.mode"] for h in table.history() if "tverr.mode" in h}

    def unnamed_files(self) -> list[str]:
        """Data files and deletion vectors in the bucket that no entry of the table's log names,
        read with boto3 and pyarrow, not through Tverr."""
        import io
        import boto3
        import pyarrow.parquet as pq
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.c.moto_port}", aws_access_key_id="test",
                          aws_secret_access_key="test", region_name="us-east-1")
        prefix = f"lake/{DATASET}/"
        keys = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="tverr-cluster", Prefix=prefix):
            keys += [o["Key"][len(prefix):] for o in page.get("Contents", [])]
        named = set()

        def vector(dv):
            if dv and dv.get("storageType") == "u":
                import uuid
                raw = dv["pathOrInlineDv"]
                z85 = raw[-20:]
                chars = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
                value = 0
                out = b""
                for i, c in enumerate(z85):
                    value = value * 85 + chars.index(c)
                    if i % 5 == 4:
                        out += value.to_bytes(4, "big")
                        value = 0
                named.add(f"{raw[:-20]}/" * bool(raw[:-20]) + f"deletion_vector_{uuid.UUID(bytes=out)}.bin")

        for key in keys:
            if not key.startswith("_delta_log/"):
                continue
            body = s3.get_object(Bucket="tverr-cluster", Key=prefix + key)["Body"].read()
            if key.endswith(".json"):
                for line in body.splitlines():
                    action = json.loads(line)
                    for kind in ("add", "remove"):
                        if kind in action:
                            named.add(urllib.parse.unquote(action[kind]["path"]))
                            vector(action[kind].get("deletionVector"))
            elif key.endswith(".checkpoint.parquet"):
                for add in pq.read_table(io.BytesIO(body), columns=["add"]).column("add").to_pylist():
                    if add:
                        named.add(urllib.parse.unquote(add["path"]))
                        vector(add.get("deletionVector"))
        return sorted(k for k in keys if not k.startswith("_delta_log/") and k not in named)

    def consistent(self, what: str):
        """The invariants after any event: catalogue = lake, rows = history, log verifies."""
        versions = self.versions()
        numbers = [v["version"] for v in versions]
        lake = self.lake_versions()
        recorded = {v["version"]: v["mode"] for v in versions if v["version"] >= min(lake)}
        check(recorded == lake, f"{what}: the catalogue's versions {recorded} are not the lake's {lake}")
        expected = 0
        for v in versions:
            expected = v["written"] if v["mode"] in ("create", "replace") else expected + v["written"] - v["removed"]
        out = self.c.tverr("sql", "--purpose", "kontroll", f"SELECT count(*) AS n FROM {DATASET.replace('/', '.')}", "--format", "csv")
        got = int(out.stdout.decode().splitlines()[-1])
        check(got == expected, f"{what}: {got} rows in the dataset, the history accounts for {expected}")
        left = self.unnamed_files()
        check(not left, f"{what}: files no version names are left in the bucket: {left[:5]}")
        verify = self.c.tverr("audit", "verify", check=False)
        check(verify.returncode == 0, f"{what}: the access log does not verify: {verify.stdout.decode()} {verify.stderr.decode()}")
        return numbers[-1], got

    # --- phases ---------------------------------------------------------------------------------
    def concurrent(self, per_node: int = 6):
        before = self.versions()
        sizes = []
        jobs = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(self.c.nodes) * per_node) as pool:
            for node in self.c.nodes:
                for j in range(per_node):
                    n = 10 + node.index * 7 + j
                    sizes.append(n)
                    jobs.append(pool.submit(self.append, node, n))
            results = [j.result() for j in jobs]
        bad = [(s, b[:300]) for s, _, b in results if s not in (200, 201)]
        check(not bad, f"concurrent appends failed: {bad}")
        after = self.versions()
        numbers = [v["version"] for v in after]
        check(numbers == list(range(numbers[0], numbers[-1] + 1)), f"versions are not contiguous: {numbers}")
        check(len(after) - len(before) == len(sizes), f"{len(after) - len(before)} new versions for {len(sizes)} appends")
        new_rows = sorted(v["written"] for v in after[len(before):])
        check(new_rows == sorted(sizes), f"the new versions' rows {new_rows} are not the appends' {sorted(sizes)}")
        version, rows = self.consistent("after the concurrent appends")
        print(f"ok concurrent: {len(sizes)} appends from {len(self.c.nodes)} nodes at once, versions up to {version}, {rows} rows")

    def revoke(self):
        agreement = self.agreement()
        for node in self.c.nodes:
            status, _, body = self.read_count(node)
            check(status == 200, f"node {node.index} refused a read under agreement {agreement}: {status} {body[:200]}")
        status, _, body = self.c.nodes[0].request("POST", f"/api/v1/agreements/{agreement}/revoke", b'{"note": "test"}',
                                                  {"Authorization": f"Bearer {self.steward}", "Content-Type": "application/json"})
        check(status == 200, f"revoking agreement {agreement}: {status} {body[:300]}")
        for node in self.c.nodes:
            status, _, body = self.read_count(node)
            check(status in (403, 404), f"node {node.index} still read under revoked agreement {agreement}: {status} {body[:200]}")
        print(f"ok revoke: agreement {agreement} read on every node, revoked on node 0, refused by every node at the next request")
        self.agreement()

    def kills(self, n: int):
        self.consistent("before the kills")
        kinds = {"append": 0, "upsert": 0, "erase": 0, "agreement": 0}
        for i in range(n):
            kind = self.rng.choice(list(kinds))
            kinds[kind] += 1
            node = self.rng.choice(self.c.nodes)
            delay = self.rng.uniform(0.0, 1.2)
            if kind in ("append", "upsert"):
                rows = self.rng.choice([50, 2000, 20000])
                start = self.next_id if kind == "append" else self.rng.randint(1, max(2, self.next_id - 1_000_000))
                self.next_id += rows
                mode = "append" if kind == "append" else "upsert&key=id"
                body = csv_rows(start, rows)
                with concurrent.futures.ThreadPoolExecutor(1) as pool:
                    f = pool.submit(node.request, "POST", f"/api/v1/datasets/{DATASET}/versions?mode={mode}", body,
                                    {"Authorization": f"Bearer {self.steward}", "Content-Type": "text/csv"}, 60)
                    time.sleep(delay)
                    node.kill()
                    try:
                        f.result()
                    except Exception:  # noqa: BLE001 - the connection dies with the node
                        pass
                node.start()
            elif kind == "erase":
                target = person(self.rng.randint(1, 100))
                proc = self.c.popen("erase", "person", target, "--dataset", DATASET)
                time.sleep(delay)
                proc.kill()
                proc.wait()
                # The killed process was the writer; a node that starts finishes what it left.
                node.kill()
                node.start()
            else:
                proc = self.c.popen("agreement", "revoke", str(self.latest_agreement()), "--as", "forvalter")
                time.sleep(delay / 4)
                proc.kill()
                proc.wait()
                self.agreement()
            self.consistent(f"kill {i + 1} ({kind} on node {node.index} after {delay:.2f} s)")
        logs = "".join(node.log.read_text(errors="replace") for node in self.c.nodes)
        found = {what: logs.count(text) for what, text in RECOVERIES.items()}
        print(f"ok kills: {n} kill -9s during writes ({', '.join(f'{k} {v}' for k, v in kinds.items())}); every invariant held after each")
        print(f"   what the nodes finished: {', '.join(f'{k} {v}' for k, v in found.items())}")

    def shutdown(self):
        """SIGTERM during a write: the write finishes and is answered, then the node exits."""
        node = self.c.nodes[1]
        body = csv_rows(self.next_id, 100_000)
        self.next_id += 100_000
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            answer = pool.submit(node.request, "POST", f"/api/v1/datasets/{DATASET}/versions?mode=append", body,
                                 {"Authorization": f"Bearer {self.steward}", "Content-Type": "text/csv"}, 120)
            time.sleep(0.3)
            node.proc.terminate()
            status, _, body = answer.result()
        check(status in (200, 201), f"a write under way when its node got SIGTERM: {status} {body[:300]}")
        code = node.proc.wait(30)
        check(code == 0, f"the node ended with {code} after SIGTERM")
        self.consistent("after a graceful stop")
        node.start()
        print("ok shutdown: SIGTERM during a write of 100,000 rows: the write was answered 200, then the node exited 0")

    def backup(self):
        """A backup taken while every node appends is one catalogue generation: restored into an
        embedded deployment (SQLite, local files), the dataset is at the version the backup names,
        with exactly the rows its recorded versions wrote, and the log verifies."""
        target = self.c.work / "backup"
        with concurrent.futures.ThreadPoolExecutor(len(self.c.nodes) * 2) as pool:
            jobs = [pool.submit(self.append, node, 2000) for node in self.c.nodes for _ in range(2)]
            time.sleep(0.3)
            summary = json.loads(self.c.tverr("backup", str(target), "--json").stdout)
            results = [j.result() for j in jobs]
        bad = [(st, b[:200]) for st, _, b in results if st not in (200, 201)]
        check(not bad, f"appends during the backup failed: {bad}")
        env = {k: v for k, v in self.c.env().items() if not k.startswith("AWS_")}
        for k in ("TVERR_CATALOG", "TVERR_STORAGE"):
            env.pop(k)
        env["TVERR_DATA"] = str(self.c.work / "restored")

        def tverr(*args):
            out = subprocess.run([tverr_bin(), *args], env=env, capture_output=True, timeout=300)
            check(out.returncode == 0, f"restored: tverr {' '.join(args)}: {out.stderr.decode()[-400:]}")
            return out.stdout.decode()

        tverr("restore", str(target))
        history = json.loads(tverr("history", DATASET, "--json"))
        expected = 0
        for v in history:
            expected = v["rows_written"] if v["mode"] in ("create", "replace") else expected + v["rows_written"] - v["rows_removed"]
        got = int(tverr("sql", "--purpose", "kontroll", f"SELECT count(*) AS n FROM {DATASET.replace('/', '.')}", "--format", "csv").splitlines()[-1])
        check(got == expected, f"restored: {got} rows, the history accounts for {expected}")
        named = next(d["version"] for d in summary["datasets"] if d["dataset"] == DATASET)
        check(history[-1]["version"] == named, f"restored at version {history[-1]['version']}, the backup names {named}")
        tverr("audit", "verify")
        self.consistent("after the backup")
        print(f"ok backup: taken while 6 appends ran on 3 nodes, at generation {summary['generation']}; restored into SQLite and "
              f"local files at version {named} with {got} rows, as its history accounts; the log verifies")

    def stop(self):
        """SIGSTOP of a node in the middle of a write (a hung host that keeps its connections):
        the server ends its lock session after the lease, so another node's write of the dataset
        goes through; the stopped node, continued, finds its lock gone, commits nothing and
        cleans up what it wrote."""
        node, other = self.c.nodes[2], self.c.nodes[0]
        body = csv_rows(self.next_id, 200_000)
        self.next_id += 200_000
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            stalled = pool.submit(node.request, "POST", f"/api/v1/datasets/{DATASET}/versions?mode=append", body,
                                  {"Authorization": f"Bearer {self.steward}", "Content-Type": "text/csv"}, 300)
            wait_for("the write to be under way", lambda: int(self.c.pg("SELECT count(*) FROM dataset_writes")[0][0]) > 0, 60, 0.01)
            node.proc.send_signal(signal.SIGSTOP)
            started = time.monotonic()
            status, _, answer = self.append(other, 10, timeout=120)
            waited = time.monotonic() - started
            node.proc.send_signal(signal.SIGCONT)
            check(status in (200, 201), f"a write while another node is stopped holding the lock: {status} {answer[:300]}")
            check(waited < LEASE_SECONDS * 3 + 10, f"the other node's write waited {waited:.0f} s for a lease of {LEASE_SECONDS} s")
            status, _, answer = stalled.result()
        check(status in (200, 503), f"the stopped node's write, continued: {status} {answer[:300]}")
        if status == 503:
            check(b"lost its lock" in answer or b"unavailable" in answer, f"the stopped node's 503 does not say why: {answer[:300]}")
        wait_for("the stopped node's clean-up", lambda: int(self.c.pg("SELECT count(*) FROM dataset_writes")[0][0]) == 0, 60)
        self.consistent("after a node was stopped holding the lock")
        print(f"ok stop: a node stopped mid-write; another node's write went through after {waited:.1f} s "
              f"(lease {LEASE_SECONDS} s); the stopped node, continued, answered {status} and left nothing")

    def refused_for_now(self, what: str, answer: tuple[int, dict, bytes]):
        """A request a service fault stopped: 503 with Retry-After and a problem, no rows."""
        status, headers, body = answer
        check(status == 503, f"{what}: {status} instead of 503: {body[:300]}")
        check("Retry-After" in headers, f"{what}: 503 without Retry-After")
        problem = json.loads(body)
        check(problem.get("type") in ("/problems/unavailable", "/problems/audit-unavailable"), f"{what}: problem {problem}")
        check(b"rows" not in body, f"{what}: a refusal that holds rows: {body[:300]}")

    def faults(self, outage: float):
        node = self.c.nodes[0]
        self.agreement()
        check(self.read_count(node)[0] == 200, "a read before the faults failed")
        # PostgreSQL down for `outage` seconds.
        self.c.stop_pg()
        stopped = time.monotonic()
        check(node.status("/health") == 200, "/health (liveness) failed while PostgreSQL was down")
        ready = node.request("GET", "/ready")
        check(ready[0] == 503 and "Retry-After" in ready[1], f"/ready answered {ready[0]} while PostgreSQL was down")
        check(json.loads(ready[2])["catalogue"] == "unavailable", f"/ready: {ready[2]}")
        for n in self.c.nodes:
            self.refused_for_now(f"a read on node {n.index} while PostgreSQL was down", self.read_count(n))
        self.refused_for_now("an append while PostgreSQL was down", self.append(node, 10))
        self.next_id -= 10
        time.sleep(max(0.0, outage - (time.monotonic() - stopped)))
        self.c.start_pg()
        back = time.monotonic()
        for n in self.c.nodes:
            wait_for(f"node {n.index} to read again after PostgreSQL came back", lambda: self.read_count(n)[0] == 200, 60, 0.2)
        recovered = time.monotonic() - back
        check(self.append(node, 10)[0] in (200, 201), "an append after PostgreSQL came back failed")
        self.consistent("after PostgreSQL was down")
        print(f"ok faults: PostgreSQL down {outage:.0f} s: 503 with Retry-After on every node, /health 200, /ready 503; "
              f"every node read again {recovered:.1f} s after it came back, without a restart")
        # S3 answering 503 to everything.
        self.c.faults.set("503")
        for n in self.c.nodes:
            self.refused_for_now(f"a read on node {n.index} while S3 answered 503", self.read_count(n))
        self.refused_for_now("an append while S3 answered 503", self.append(node, 10))
        self.next_id -= 10
        ready = node.request("GET", "/ready")
        check(ready[0] == 503 and json.loads(ready[2])["storage"] == "unavailable", f"/ready while S3 answered 503: {ready[0]} {ready[2]}")
        self.c.faults.set("pass")
        for n in self.c.nodes:
            wait_for(f"node {n.index} to read again after S3 came back", lambda: self.read_count(n)[0] == 200, 60, 0.2)
        self.consistent("after S3 answered 503")
        # S3 stops answering right after a commit landed: the answer must not say nothing changed.
        before = len(self.versions())
        self.c.faults.set("commit503")
        status, headers, body = self.append(node, 10)
        self.c.faults.set("pass")
        check(status == 503 and "Retry-After" in headers, f"an append whose commit landed before S3 stopped: {status} {body[:300]}")
        check(json.loads(body)["type"] == "/problems/write-outcome-unknown", f"an append whose commit landed: {body[:300]}")
        check(self.append(node, 10)[0] in (200, 201), "the next append after S3 came back failed")
        after = self.versions()
        check(len(after) == before + 2, f"{len(after) - before} new versions for a landed commit and one more append")
        self.consistent("after a commit that landed while S3 stopped answering")
        # S3 answering every request 0.5 s late: slow, never wrong (a request the server's time
        # limit stops is a 504).
        self.c.faults.set("slow", 0.5)
        slow = [self.read_count(n, timeout=150)[0] for n in self.c.nodes]
        check(all(st in (200, 503, 504) for st in slow), f"reads while S3 was slow: {slow}")
        appended = self.append(node, 10, timeout=300)[0]
        check(appended in (200, 201, 503, 504), f"an append while S3 was slow: {appended}")
        self.c.faults.set("pass")
        if appended not in (200, 201):
            self.next_id -= 10
        self.consistent("after S3 was slow")
        print(f"ok faults: S3 answering 503: 503 with Retry-After on every node and /ready 503, then served again; a commit that "
              f"landed just before S3 stopped: 503 write-outcome-unknown, then recorded once by the next write; "
              f"S3 0.5 s slow: reads {slow}, an append {appended}")

    def latest_agreement(self) -> int:
        latest = self.c.pg("SELECT max(id) FROM agreements")
        return int(latest[0][0]) if latest and latest[0][0] else self.agreement()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=50)
    p.add_argument("--outage", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=int(time.time()))
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--phases", default="concurrent,revoke,shutdown,backup,stop,kills,faults")
    a = p.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="tverr-cluster."))
    c = Cluster(work)
    started = time.monotonic()
    print(f"cluster test in {work}, seed {a.seed}")
    try:
        c.start_services()
        run = Run(c, a.seed)
        run.setup()
        c.start_nodes()
        for phase in a.phases.split(","):
            if phase == "kills":
                run.kills(a.kills)
            elif phase == "faults":
                run.faults(a.outage)
            else:
                getattr(run, phase)()
    except (Failed, AssertionError, TimeoutError) as e:
        print(f"FAILED: {e}", file=sys.stderr)
        for n in c.nodes:
            if n.log.exists():
                print(f"--- the end of node {n.index}'s log:\n" + "\n".join(n.log.read_text(errors="replace").splitlines()[-15:]), file=sys.stderr)
        return 1
    finally:
        c.stop()
        if not a.keep:
            import shutil
            shutil.rmtree(work, ignore_errors=True)
    print(f"cluster test passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
