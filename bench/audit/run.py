#!/usr/bin/env python3
"""Access-log benchmark: what auditing costs.

Builds the release `tverr-bench` binary (`cargo build --release -p tverr-bench --features unaudited`;
the feature also compiles in a log that records nothing, used only by this binary) and runs it.
In one run it measures:

1. the append rate with durable commits (SQLite `synchronous = FULL`; PostgreSQL with
   `--postgres URL`) for 1, 64, 256 and 1,024 concurrent writers (group commit);
2. small reads of a confidential dataset over HTTP (one person of `hamar/innbyggere` by
   fødselsnummer, as the Folkeregister's case worker) on an audited server and on an unaudited
   one over the same data, alternating: p50/p90/p99 of one client, the median rate of eight
   concurrent clients, and the ratio of the p50s.

3. In the same run, the floor under any durable commit on this machine: one entry-sized row and
   one subject row committed by SQLite itself (Python's sqlite3, the C library with no Tverr in
   between, WAL and `synchronous = FULL` as Tverr's catalogue), back to back and after 10 ms
   without writes, which is what a single client's read meets.

With `--with-postgres` it also starts a throw-away PostgreSQL cluster (Debian's binaries, fsync
and synchronous_commit on, as in production) on a free loopback port and measures appends there.

Usage: python3 bench/audit/run.py [--bench PATH] [--with-postgres] [-- tverr-bench arguments, e.g. --rounds 7]
"""
import argparse
import glob
import itertools
import sqlite3
import statistics
import time
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]


def start_postgres(work):
    """A private cluster with durable commits; returns (URL, stop function)."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins:
        raise SystemExit("--with-postgres: no PostgreSQL binaries under /usr/lib/postgresql (apt-get install postgresql)")
    pg_bin = bins[-1]
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        shutil.chown(work, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = os.path.join(work, "pg")
    subprocess.run([*as_pg, f"{pg_bin}/initdb", "-D", data, "-A", "trust", "-U", "postgres"], check=True, capture_output=True)
    subprocess.run([*as_pg, f"{pg_bin}/pg_ctl", "-D", data, "-o", f"-p {port} -k {work} -c listen_addresses=127.0.0.1",
                    "-l", os.path.join(work, "pg.log"), "-w", "start"], check=True, capture_output=True)

    def stop():
        subprocess.run([*as_pg, f"{pg_bin}/pg_ctl", "-D", data, "-m", "fast", "stop"], capture_output=True)

    return f"postgres://postgres@127.0.0.1:{port}/postgres", stop


def sqlite_floor(work, n=200):
    """p50 (ms) of a plain SQLite commit of one 1.2 KB entry and one subject row: back to back,
    and after 10 ms idle."""
    db = sqlite3.connect(os.path.join(work, "floor.db"), isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("CREATE TABLE log (seq INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
    db.execute("CREATE TABLE subjects (subject TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (subject, seq))")
    seq = itertools.count(1)
    payload = "x" * 1200
    result = []
    for idle in (0.0, 0.010):
        times = []
        for _ in range(n):
            if idle:
                time.sleep(idle)
            started = time.perf_counter()
            s = next(seq)
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO log VALUES (?, ?)", (s, payload))
            db.execute("INSERT INTO subjects VALUES (?, ?)", ("a1b2c3", s))
            db.execute("COMMIT")
            times.append(time.perf_counter() - started)
        result.append(statistics.median(times) * 1000)
    db.close()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", help="a built tverr-bench binary (default: build it)")
    parser.add_argument("--with-postgres", action="store_true", help="also measure appends on a local PostgreSQL")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for tverr-bench (after --)")
    args = parser.parse_args()
    binary = args.bench
    if binary is None:
        target = os.environ.get("CARGO_TARGET_DIR", str(pathlib.Path.home() / ".cache" / "tverr-target"))
        env = dict(os.environ, CARGO_TARGET_DIR=target)
        subprocess.run(["cargo", "build", "--release", "-p", "tverr-bench", "--features", "unaudited", "--bin", "tverr-bench"],
                       cwd=ROOT, env=env, check=True)
        binary = str(pathlib.Path(target) / "release" / "tverr-bench")
    rest = [a for a in args.rest if a != "--"]
    stop = None
    work = tempfile.mkdtemp(prefix="tverr-bench-pg.")
    try:
        if args.with_postgres:
            url, stop = start_postgres(work)
            rest = ["--postgres", url, *rest]
        code = subprocess.run([binary, *rest]).returncode
        warm, cold = sqlite_floor(work)
        print(f"plain SQLite commit (the C library alone, WAL, synchronous = FULL): back to back p50 {warm:.3f} ms, "
              f"after 10 ms idle p50 {cold:.3f} ms")
    finally:
        if stop:
            stop()
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
