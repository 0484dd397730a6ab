#!/usr/bin/env python3
"""Secure-scan benchmark: the same queries over a 5 M-row table, unrestricted (the operator) and
through an agreement with two masks and a row filter, alternating, in one run.

Uses the release `tverr` binary and the benchmark CSV of bench/ingest (generated if missing):
fodselsnummer, names, address, postnummer, dates, amounts. The agreement masks `fodselsnummer`
(hmac) and `etternavn` (partial) and filters rows with `kommunenummer = 3403` (true for every
row, so both sides compute over the same rows and the difference is the price of the policy).

Each measurement is a whole `tverr sql` process (start-up and planning included on both sides).
Prints the median seconds per query and side, and the ratio restricted / unrestricted.

Usage: python3 bench/secure-scan/run.py [--rows 5000000] [--runs 5] [--tverr PATH]
"""
import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench" / "ingest"))
import run as ingest_bench  # noqa: E402  (the binary and the CSV generator)

QUERIES = {
    "aggregate": "SELECT postnummer, count(*) AS n, avg(belop) AS snitt, max(fodselsdato) AS yngst "
                 "FROM bench.innbyggere GROUP BY postnummer ORDER BY postnummer",
    "filtered select": "SELECT fodselsnummer, etternavn, belop FROM bench.innbyggere "
                       "WHERE belop > 99900 ORDER BY belop, fodselsnummer",
}


def tverr(binary, env, *args, capture=True):
    out = subprocess.run([binary, *args], env=env, capture_output=capture)
    if out.returncode != 0:
        raise SystemExit(f"tverr {' '.join(args)} failed: {out.stderr.decode()}")
    return out.stdout.decode()


def setup(binary, env, csv):
    steps = [
        ["org", "create", "bench", "--name", "Bench kommune", "--orgnr", "970540008", "--kommunenummer", "3403"],
        ["department", "create", "bench/register", "--name", "Register"],
        ["department", "create", "bench/analyse", "--name", "Analyse"],
        ["ingest", "bench/innbyggere", str(csv), "--create", "--department", "register", "--title", "Innbyggere",
         "--classification", "confidential", "--subject", "fodselsnummer=person"],
        ["user", "create", "bench/analyse/anna", "--role", "steward"],
        ["user", "create", "bench/register/reidar", "--role", "steward"],
        ["user", "create", "bench/analyse/ali", "--role", "employee"],
        ["legal-basis", "create", "bench/statistikk", "--gdpr", "6(1)(e)", "--hjemmel", "kommuneloven § 14-2"],
        ["purpose", "create", "bench/analyse", "--name", "Analyse", "--department", "analyse", "--legal-basis", "statistikk"],
        ["purpose", "create", "bench/tilsyn", "--name", "Tilsyn", "--legal-basis", "statistikk"],
        ["agreement", "request", "--as", "anna", "--provider", "bench/register", "--consumer", "bench/analyse",
         "--dataset", "bench/innbyggere", "--mask", "fodselsnummer=hmac", "--mask", "etternavn=partial",
         "--filter", "kommunenummer = 3403", "--purpose", "analyse"],
        ["agreement", "approve", "1", "--as", "reidar"],
    ]
    for s in steps:
        tverr(binary, env, *s)


def timed(binary, env, args):
    start = time.perf_counter()
    out = tverr(binary, env, *args)
    return time.perf_counter() - start, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tverr", default=None)
    args = ap.parse_args()
    binary, csv = ingest_bench.prepare(args.tverr, args.rows)
    work = pathlib.Path(tempfile.mkdtemp(prefix="tverr-secure-bench-"))
    env = dict(os.environ, TVERR_DATA=str(work / "data"), TVERR_LOG="error")
    env.pop("TVERR_PURPOSE", None)
    try:
        setup(binary, env, csv)
        sides = {
            "unrestricted": ["--purpose", "tilsyn"],
            "agreement": ["--as", "ali", "--purpose", "analyse"],
        }
        results = {}
        for name, sql in QUERIES.items():
            times = {side: [] for side in sides}
            outputs = {}
            for _ in range(args.runs):
                for side, who in sides.items():
                    secs, out = timed(binary, env, ["sql", sql, "--format", "csv", *who])
                    times[side].append(secs)
                    outputs[side] = out
            rows = {side: out.count("\n") - 1 for side, out in outputs.items()}
            assert rows["unrestricted"] == rows["agreement"], f"{name}: the row filter must keep every row: {rows}"
            results[name] = {side: statistics.median(t) for side, t in times.items()}
            results[name]["rows"] = rows["agreement"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"table: {args.rows:,} rows; agreement: hmac(fodselsnummer), partial(etternavn), "
          f"row filter kommunenummer = 3403; {args.runs} runs each, alternating")
    for name, r in results.items():
        ratio = r["agreement"] / r["unrestricted"]
        print(f"{name:<16} unrestricted {r['unrestricted']:.3f} s   agreement {r['agreement']:.3f} s   "
              f"ratio {ratio:.2f}   ({r['rows']} result rows)")


if __name__ == "__main__":
    main()
