#!/usr/bin/env python3
"""Whether the time of a dataset page that is not found tells a hidden dataset from a missing one.

The attack this measures (ninth release-build attack, F5): an anonymous visitor asks for
`/datasett/ORG/NAME` for names that exist but are hidden from them and for names that do not
exist, on one keep-alive connection, in alternating random order, and compares the medians.
Before the fix a hidden dataset's 404 came some 20 µs later (its policy check does more).

1. The demo municipality (--persons, default 300) in a temporary directory, served by the given
   binary.
2. --reps rounds; in each, every hidden and every missing name once, shuffled.

Prints the median and p10 of each, and the difference of the medians. With --control both sets
are missing names, which gives the difference that noise alone makes.

Usage: python3 bench/web/not_found.py --tverr ~/.cache/tverr-target/release/tverr
"""
import argparse
import http.client
import pathlib
import random
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from common import free_port, wait  # noqa: E402

HIDDEN = ["hamar/innbyggere", "hamar/familierelasjoner", "hias/vannmaler_avlesninger", "hamar/husholdningsinntekt"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tverr", required=True)
    ap.add_argument("--persons", type=int, default=300)
    ap.add_argument("--reps", type=int, default=150)
    ap.add_argument("--control", action="store_true", help="time two sets of missing names instead: the noise floor")
    a = ap.parse_args()
    missing = [h[:-1] + "x" for h in HIDDEN]
    hidden = [h[:-1] + "q" for h in HIDDEN] if a.control else HIDDEN
    with tempfile.TemporaryDirectory() as tmp:
        data = pathlib.Path(tmp) / "data"
        subprocess.run([a.tverr, "--data", str(data), "demo", "--persons", str(a.persons)], check=True, capture_output=True)
        port = free_port()
        server = subprocess.Popen([a.tverr, "--data", str(data), "serve", "--listen", f"127.0.0.1:{port}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait(f"http://127.0.0.1:{port}/health")
            conn = http.client.HTTPConnection("127.0.0.1", port)
            times = {"hidden": [], "missing": []}
            for _ in range(a.reps):
                names = [("hidden", n) for n in hidden] + [("missing", n) for n in missing]
                random.shuffle(names)
                for kind, name in names:
                    t = time.perf_counter()
                    conn.request("GET", f"/datasett/{name}")
                    r = conn.getresponse()
                    r.read()
                    times[kind].append(time.perf_counter() - t)
                    if r.status != 404:
                        raise SystemExit(f"{name}: {r.status}, expected 404")
            for kind, xs in times.items():
                xs.sort()
                print(f"{kind:8} n={len(xs)} median {statistics.median(xs) * 1e6:8.1f} µs  p10 {xs[len(xs) // 10] * 1e6:8.1f} µs")
            diff = statistics.median(times["hidden"]) - statistics.median(times["missing"])
            print(f"hidden − missing, medians: {diff * 1e6:+.1f} µs")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
