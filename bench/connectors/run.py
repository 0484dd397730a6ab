#!/usr/bin/env python3
"""Connector benchmark: pulling a PostgreSQL table with `tverr connector run` against the two-step
path an operator would script by hand (`psql \\copy` to CSV, then `tverr ingest`), in one run.

It starts a private PostgreSQL cluster on loopback (or uses --postgres URL), fills a table of
case records (`saker`: case number, fødselsnummer, title, amount, status, changed-at) with
--rows rows by SQL, then measures, alternating, --runs times each:
  * full pull: a fresh data directory, `tverr connector create` (replace, fødselsnummer
    validated), and the timed `tverr connector run`;
  * two-step: a fresh data directory, the timed `psql -c "\\copy (…) TO file CSV HEADER"` plus
    `tverr ingest --create` of that file with the same validation.
After the runs it makes an incremental connector (upsert by saksnr, incremental on `endret`),
times its first run, then changes --changed (1 %) of the rows, chosen at random, and times its
incremental runs, which read only those rows and upsert them (the rows they replace are marked
deleted with a deletion vector; no data file is rewritten). The table has an index on `endret`,
as a source read incrementally should.

Prints the medians, the ratio two-step ÷ full pull (target ≥ 1.0) and the incremental run's
share of the full pull (target < 5 %).

Usage: python3 bench/connectors/run.py [--rows 1000000] [--runs 3] [--changed 0.01] [--tverr PATH]
       [--postgres URL]
"""
import argparse
import os
import pathlib
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from common import fnr, free_port, release_binary  # noqa: E402

QUERY = "SELECT saksnr, fodselsnummer, tittel, belop, status, endret FROM saker"


def fnrs(n):
    """`n` valid synthetic fødselsnumre, the same on every run."""
    rng = random.Random(3403)
    return [fnr(rng) for _ in range(n)]


class Postgres:
    """A throw-away cluster on a free loopback port (as user postgres when run as root)."""

    def __init__(self, work):
        self.dir = work / "pg"
        binaries = sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin"))
        if not binaries:
            raise SystemExit("PostgreSQL is not installed (Debian package postgresql)")
        self.bin = binaries[-1]
        self.port = free_port()
        self.as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(work, "postgres")
        subprocess.run([*self.as_pg, str(self.bin / "initdb"), "-D", str(self.dir), "-A", "trust", "-U", "postgres", "--no-sync"],
                       check=True, capture_output=True)
        subprocess.run([*self.as_pg, str(self.bin / "pg_ctl"), "-D", str(self.dir), "-o",
                        f"-p {self.port} -k {work} -c listen_addresses=127.0.0.1", "-l", str(work / "pg.log"), "-w", "start"],
                       check=True, capture_output=True)
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self):
        subprocess.run([*self.as_pg, str(self.bin / "pg_ctl"), "-D", str(self.dir), "-m", "fast", "stop"], capture_output=True)


def psql(url, sql):
    return subprocess.run(["psql", url, "-qtAc", sql], check=True, capture_output=True, text=True).stdout.strip()


def fill(url, rows):
    people = ",".join(f"('{f}')" for f in fnrs(1000))
    psql(url, "DROP TABLE IF EXISTS saker")
    psql(url, "CREATE TABLE saker (saksnr int PRIMARY KEY, fodselsnummer text NOT NULL, tittel text NOT NULL, "
              "belop numeric(12,2), status text NOT NULL, endret timestamptz NOT NULL)")
    psql(url, f"""
        WITH p AS (SELECT row_number() OVER () - 1 AS i, f FROM (VALUES {people}) AS v(f))
        INSERT INTO saker
        SELECT g, p.f,
               (ARRAY['Byggesøknad, garasje','Søknad om barnehageplass','Klage på eiendomsskatt','Skjenkebevilling',
                      'Startlån','Tilskudd til lag og foreninger'])[1 + g % 6] || ' ' || g,
               (g % 100000) / 7.0,
               (ARRAY['mottatt','under behandling','vedtatt','avsluttet'])[1 + g % 4],
               timestamptz '2024-01-01 00:00+01' + (g || ' seconds')::interval
        FROM generate_series(1, {rows}) AS g JOIN p ON p.i = g % 1000""")
    # A source system that is read incrementally indexes its changed-at column, or each run scans
    # the table there.
    psql(url, "CREATE INDEX saker_endret ON saker (endret)")
    psql(url, "VACUUM ANALYZE saker")


def timed(cmd, env):
    start = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed: {p.stderr}{p.stdout}")
    return time.perf_counter() - start, p.stdout


def installation(tverr, work, name):
    data = work / name
    shutil.rmtree(data, ignore_errors=True)
    env = dict(os.environ, TVERR_DATA=str(data), TVERR_LOG="error", TVERR_CONNECTOR_ALLOW="127.0.0.1/32")
    for args in (["org", "create", "bench", "--name", "Bench", "--orgnr", "970540008"],
                 ["department", "create", "bench/sak", "--name", "Sak"],
                 ["user", "create", "bench/sak/forvalter", "--role", "steward"]):
        subprocess.run([tverr, *args], env=env, check=True, capture_output=True)
    return env


CREATE = ["--create", "--department", "sak", "--title", "Saker", "--classification", "confidential",
          "--subject", "fodselsnummer=person"]


def connector_full(tverr, work, url):
    """A full-pull connector (replace) into a fresh installation; the timed first run."""
    env = installation(tverr, work, "pull")
    subprocess.run([tverr, "connector", "create", "saker", "--dataset", "bench/saker", "--source", url, "--schedule", "0 2 * * *",
                    "--query", QUERY, "--mode", "replace", "--as", "forvalter", *CREATE],
                   env=env, check=True, capture_output=True)
    secs, _ = timed([tverr, "connector", "run", "saker", "--as", "forvalter"], env)
    return secs


def connector_incremental(tverr, work, url):
    """An incremental connector (upsert by saksnr past the highest `endret`); its first run, timed."""
    env = installation(tverr, work, "incremental")
    subprocess.run([tverr, "connector", "create", "saker", "--dataset", "bench/saker", "--source", url, "--schedule", "0 2 * * *",
                    "--query", QUERY, "--incremental", "endret", "--mode", "upsert", "--key", "saksnr", "--as", "forvalter", *CREATE],
                   env=env, check=True, capture_output=True)
    secs, _ = timed([tverr, "connector", "run", "saker", "--as", "forvalter"], env)
    return secs, env


def two_step(tverr, work, url):
    env = installation(tverr, work, "twostep")
    csv = work / "saker.csv"
    start = time.perf_counter()
    subprocess.run(["psql", url, "-qc", f"\\copy ({QUERY}) TO '{csv}' WITH (FORMAT csv, HEADER true)"], check=True, capture_output=True)
    subprocess.run([tverr, "ingest", "bench/saker", str(csv), *CREATE], env=env, check=True, capture_output=True)
    secs = time.perf_counter() - start
    csv.unlink()
    return secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--changed", type=float, default=0.01)
    ap.add_argument("--tverr", default=None)
    ap.add_argument("--postgres", default=None)
    args = ap.parse_args()
    tverr = release_binary(args.tverr, ROOT)
    work = pathlib.Path(tempfile.mkdtemp(prefix="tverr-bench-conn-"))
    pg = None
    try:
        url = args.postgres
        if not url:
            pg = Postgres(work)
            url = pg.url
        print(f"filling saker with {args.rows:,} rows …", file=sys.stderr)
        fill(url, args.rows)
        full, two = [], []
        for i in range(args.runs):
            full.append(connector_full(tverr, work, url))
            two.append(two_step(tverr, work, url))
            print(f"round {i + 1}: connector {full[-1]:.2f} s, two-step {two[-1]:.2f} s", file=sys.stderr)
        first, env = connector_incremental(tverr, work, url)
        changed = int(args.rows * args.changed)
        incremental = []
        for i in range(args.runs):
            psql(url, f"UPDATE saker SET status = 'endret {i}', endret = now() + interval '{i} seconds' "
                      f"WHERE saksnr IN (SELECT saksnr FROM saker ORDER BY md5(saksnr::text || '{i}') LIMIT {changed})")
            secs, out = timed([tverr, "connector", "run", "saker", "--as", "forvalter"], env)
            if f"{changed} rows" not in out:
                raise SystemExit(f"the incremental run did not read {changed} rows: {out}")
            incremental.append(secs)
        unchanged, out = timed([tverr, "connector", "run", "saker", "--as", "forvalter"], env)
        if "unchanged" not in out:
            raise SystemExit(f"a run without changes made a version: {out}")
    finally:
        if pg:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    f_med, t_med, i_med = statistics.median(full), statistics.median(two), statistics.median(incremental)
    pg_version = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"table: {args.rows:,} rows in PostgreSQL ({pg_version}); {args.runs} alternating rounds")
    print(f"connector full pull          : median {f_med:.2f} s  {args.rows / f_med:,.0f} rows/s  (runs {', '.join(f'{x:.2f}' for x in full)})")
    print(f"psql \\copy + tverr ingest    : median {t_med:.2f} s  {args.rows / t_med:,.0f} rows/s  (runs {', '.join(f'{x:.2f}' for x in two)})")
    print(f"ratio (two-step time ÷ connector time): {t_med / f_med:.2f}  (target ≥ 1.0)")
    print(f"incremental run, {changed:,} rows changed at random: median {i_med:.2f} s "
          f"(runs {', '.join(f'{x:.2f}' for x in incremental)}) = {100 * i_med / f_med:.1f} % of the full pull (target < 5 %)")
    print(f"incremental connector's first run (upsert by key into a new dataset): {first:.2f} s")
    print(f"run with nothing changed: {unchanged:.2f} s, no version")


if __name__ == "__main__":
    main()
