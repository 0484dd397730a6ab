#!/usr/bin/env python3
"""Whether the time of an empty look-up tells a protected key from one held nowhere.

The attack this measures (third and fourth release-build attacks on issue 23): an employee looks
up many matrikkel numbers, keeps those that come back empty, times each of them many more times,
and ranks them by median time. Before the fix, the properties of strengt fortrolig owners came
out on top: their look-ups read and logged rows before finding nothing to show.

1. The demo municipality (--persons, default 2,000) in a temporary directory, served by the
   given binary.
2. `per` (purpose eiendomsskatt, the department that owns the property register, which sees its
   protected owners but not a strengt fortrolig owner's matrikkel) looks up 3403-1/1 … 3403-1/N
   once and keeps the empty answers.
3. Each empty key is looked up --reps more times, in a new random order each round, on one
   keep-alive connection.
4. The truth (which of them are strengt fortrolig owners' properties) comes from the subject
   index, after the timing.

Prints the median time of the protected and of the unknown keys, the difference, and where the
protected keys rank among all empty keys (ranks near the top mean the time names them; without a
leak they fall anywhere).

With `--read property` or `--read neighbours` the same attack times the building-case
service's reads instead (`GET /api/v1/properties/{key}` and `…/neighbours?within=50` as `ola`,
purpose byggesaksbehandling, who sees no owner with a protected address): the empty answers are
its 404s, and the protected keys are those of fortrolig and strengt fortrolig owners (seventh
release-build attack: 35–50 µs slower at the median, after tokio's timer).

Usage: python3 bench/lookup/oracle.py --tverr ~/.cache/tverr-target/release/tverr [--read neighbours]
"""
import argparse
import http.client
import pathlib
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from common import free_port, wait  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tverr", required=True)
    ap.add_argument("--persons", type=int, default=2000)
    ap.add_argument("--keys", type=int, default=700, help="bruksnummer 1 … N of gårdsnummer 1, 2 and 3")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--read", choices=["lookup", "property", "neighbours"], default="lookup")
    a = ap.parse_args()
    user, purpose = ("per", "eiendomsskatt") if a.read == "lookup" else ("ola", "byggesaksbehandling")
    with tempfile.TemporaryDirectory() as tmp:
        data = pathlib.Path(tmp) / "data"
        run = lambda *args: subprocess.run([a.tverr, "--data", str(data), *args], check=True, capture_output=True, text=True).stdout
        run("demo", "--persons", str(a.persons))
        token = run("token", "create", "--user", user).split()[0]
        port = free_port()
        server = subprocess.Popen([a.tverr, "--data", str(data), "serve", "--listen", f"127.0.0.1:{port}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait(f"http://127.0.0.1:{port}/health")
            c = http.client.HTTPConnection("127.0.0.1", port)
            headers = {"Authorization": f"Bearer {token}", "Tverr-Purpose": purpose}
            path = {
                "lookup": lambda key: "/api/v1/subjects/property/" + key.replace("/", "%2F"),
                "property": lambda key: "/api/v1/properties/" + key,
                "neighbours": lambda key: f"/api/v1/properties/{key}/neighbours?within=50",
            }[a.read]

            def look(key):
                started = time.perf_counter()
                c.request("GET", path(key), headers=headers)
                r = c.getresponse()
                body = r.read()
                return time.perf_counter() - started, body, r.status

            def is_empty(answer):
                return answer[2] == 404 if a.read != "lookup" else b'"organizations":[]' in answer[1]

            keys = [f"3403-{g}/{b}" for g in (1, 2, 3) for b in range(1, a.keys + 1)]
            empty = [k for k in keys if is_empty(look(k))]
            times = {k: [] for k in empty}
            for _ in range(a.reps):
                random.shuffle(empty)
                for k in empty:
                    times[k].append(look(k)[0])
        finally:
            server.terminate()
            server.wait()
        # The truth: the property register's owner of each matrikkel number (from the subject
        # index, which holds keys as stored) and the register's strengt fortrolig people.
        db = sqlite3.connect(data / "catalog.db")
        levels = "('strengt_fortrolig')" if a.read == "lookup" else "('fortrolig', 'strengt_fortrolig')"
        status = run("sql", "--as", "siri", "--purpose", "folkeregisterforvaltning", "--format", "csv",
                     f"SELECT fodselsnummer FROM hamar.innbyggere WHERE adressebeskyttelse IN {levels}")
        protected_people = set(status.split()[1:])
        owners = {r[0]: r[1] for r in db.execute(
            "SELECT b.subject, a.subject FROM subject_keys a JOIN subject_keys b ON a.file_id = b.file_id AND a.row_no = b.row_no "
            "JOIN subject_files f ON f.id = a.file_id WHERE f.dataset = 'eiendommer' AND b.subject LIKE '3403-%' AND a.subject NOT LIKE '3403-%' AND a.subject NOT LIKE '~%'")}
        protected = {k for k in empty if owners.get(k) in protected_people}
    medians = {k: statistics.median(v) * 1e6 for k, v in times.items()}
    ranked = sorted(medians, key=medians.get, reverse=True)
    unknown = [medians[k] for k in empty if k not in protected]
    shielded = [medians[k] for k in protected]
    print(f"{a.read}: {len(empty)} empty answers of {len(keys)} keys, {len(protected)} of them protected owners' properties; "
          f"{a.reps} timings each")
    if not shielded:
        raise SystemExit("no protected key among the empty answers")
    print(f"median of medians: protected {statistics.median(shielded):.0f} µs, unknown {statistics.median(unknown):.0f} µs, "
          f"difference {statistics.median(shielded) - statistics.median(unknown):+.0f} µs")
    print("ranks of the protected keys (1 = slowest):", sorted(ranked.index(k) + 1 for k in protected), f"of {len(ranked)}")


if __name__ == "__main__":
    main()
