#!/usr/bin/env python3
"""Ingest benchmark: Tverr vs DuckDB on the same municipal CSV, in one run.

Generates (once, cached) a 1 M-row CSV as Norwegian systems export it — `;`-separated, decimal
commas, dd.mm.yyyy dates, Windows-1252 — then measures, alternating, N runs of:
  * `tverr ingest` (release build) into a fresh data directory, with fødselsnummer validation;
  * DuckDB (PyPI `duckdb`) reading the same file into Parquet (`COPY … TO … (FORMAT parquet)`).
Prints the median rows/s of each, the ratio Tverr/DuckDB and Tverr's peak RSS.

Usage: python3 bench/ingest/run.py [--rows 1000000] [--runs 3] [--tverr PATH]
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
from common import fnr  # noqa: E402

FIRST = ["Åse", "Bjørn", "Kari", "Ola", "Ingrid", "Pål", "Sigrid", "Øyvind", "Marit", "Håkon", "Nora", "Jørgen"]
LAST = ["Ødegård", "Bøe", "Nygård", "Sæther", "Løken", "Ånestad", "Hansen", "Johansen", "Olsen", "Berg"]
STREETS = ["Storgata", "Torggata", "Grønnegata", "Strandgata", "Vangsvegen", "Furnesvegen", "Åkersvika"]


def generate(path: pathlib.Path, rows: int) -> None:
    rng = random.Random(3403)
    with open(path, "w", encoding="cp1252", newline="") as f:
        f.write("fodselsnummer;fornavn;etternavn;adresse;postnummer;poststed;fodselsdato;kommunenummer;belop;antall;aktiv;registrert\r\n")
        for n in range(rows):
            f.write(
                f"{fnr(rng)};{rng.choice(FIRST)};{rng.choice(LAST)};{rng.choice(STREETS)} {rng.randint(1, 150)};"
                f"{rng.choice(['2317', '2318', '0150', '2322'])};HAMAR;{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.{rng.randint(1930, 2024)};"
                f"3403;{rng.randint(0, 99999)},{rng.randint(0, 99):02d};{rng.randint(0, 50)};{rng.choice(['ja', 'nei'])};"
                f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.2024 {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}\r\n"
            )


def run_measured(cmd, env=None):
    """Runs a command; returns (seconds, peak RSS in MiB) of that child alone."""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - start
    err = p.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd[0]} failed: {err}")
    return elapsed, usage.ru_maxrss / 1024


def tverr_once(tverr: str, csv: pathlib.Path, work: pathlib.Path):
    data = work / "tverr-data"
    shutil.rmtree(data, ignore_errors=True)
    env = dict(os.environ, TVERR_DATA=str(data), TVERR_LOG="error")
    for args in (["org", "create", "bench", "--name", "Bench", "--orgnr", "970540008"],
                 ["department", "create", "bench/data", "--name", "Data"]):
        subprocess.run([tverr, *args], env=env, check=True, capture_output=True)
    return run_measured([tverr, "ingest", "bench/innbyggere", str(csv), "--create", "--department", "data",
                         "--title", "Bench", "--classification", "internal",
                         "--subject", "fodselsnummer=person"], env)


DUCKDB_SCRIPT = """
import duckdb, sys
con = duckdb.connect()
con.execute("SET threads TO 2")
con.execute(f\"\"\"COPY (SELECT * FROM read_csv('{sys.argv[1]}', delim=';', decimal_separator=',', header=true,
    encoding='latin-1', dateformat='%d.%m.%Y', timestampformat='%d.%m.%Y %H:%M'))
    TO '{sys.argv[2]}' (FORMAT parquet)\"\"\")
"""


def duckdb_once(csv: pathlib.Path, work: pathlib.Path):
    out = work / "duck.parquet"
    if out.exists():
        out.unlink()
    return run_measured([sys.executable, "-c", DUCKDB_SCRIPT, str(csv), str(out)])


def prepare(tverr_arg, rows):
    """The release binary (built unless given) and the cached benchmark CSV of `rows` rows."""
    target = os.environ.get("CARGO_TARGET_DIR", str(pathlib.Path.home() / ".cache" / "tverr-target"))
    tverr = tverr_arg or str(pathlib.Path(target) / "release" / "tverr")
    if not tverr_arg:
        subprocess.run(["cargo", "build", "--release", "-p", "tverr-cli"], cwd=ROOT, check=True,
                       env=dict(os.environ, CARGO_TARGET_DIR=target))
    cache = pathlib.Path(target) / "bench-data"
    cache.mkdir(parents=True, exist_ok=True)
    csv = cache / f"innbyggere-{rows}.csv"
    if not csv.exists():
        print(f"generating {csv} …", file=sys.stderr)
        generate(csv, rows)
    return tverr, csv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tverr", default=None)
    args = ap.parse_args()
    tverr, csv = prepare(args.tverr, args.rows)
    size_mb = csv.stat().st_size / 1e6
    work = pathlib.Path(tempfile.mkdtemp(prefix="tverr-bench-"))
    try:
        t_times, d_times, rss = [], [], []
        for _ in range(args.runs):
            secs, peak = tverr_once(tverr, csv, work)
            t_times.append(secs)
            rss.append(peak)
            secs, _ = duckdb_once(csv, work)
            d_times.append(secs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    t_med, d_med = statistics.median(t_times), statistics.median(d_times)
    print(f"file: {args.rows} rows, {size_mb:.0f} MB, windows-1252, ';', decimal comma; {args.runs} runs each")
    print(f"tverr ingest : median {t_med:.2f} s  {args.rows / t_med:,.0f} rows/s  peak RSS {max(rss):.0f} MiB")
    print(f"duckdb       : median {d_med:.2f} s  {args.rows / d_med:,.0f} rows/s")
    print(f"ratio (tverr rows/s ÷ duckdb rows/s): {d_med / t_med:.2f}")


if __name__ == "__main__":
    main()
