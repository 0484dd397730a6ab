#!/usr/bin/env python3
"""Access-log benchmark: what auditing costs.

Builds the release `tverr-bench` binary (`cargo build --release -p tverr-cli --features bench`;
the feature also compiles in a log that records nothing, used only by this binary) and runs it.
In one run it measures:

1. the append rate with durable commits (SQLite `synchronous = FULL`; PostgreSQL with
   `--postgres URL`) for 1, 64 and 256 concurrent writers (group commit);
2. small reads of a confidential dataset over HTTP (one person of `hamar/innbyggere` by
   fødselsnummer, as the Folkeregister's case worker) on an audited server and on an unaudited
   one over the same data, alternating: p50/p90/p99 of one client, the median rate of eight
   concurrent clients, and the ratio of the p50s.

Usage: python3 bench/audit/run.py [--bench PATH] [-- tverr-bench arguments, e.g. --rounds 7]
"""
import argparse
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", help="a built tverr-bench binary (default: build it)")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for tverr-bench (after --)")
    args = parser.parse_args()
    binary = args.bench
    if binary is None:
        target = os.environ.get("CARGO_TARGET_DIR", str(pathlib.Path.home() / ".cache" / "tverr-target"))
        env = dict(os.environ, CARGO_TARGET_DIR=target)
        subprocess.run(["cargo", "build", "--release", "-p", "tverr-cli", "--features", "bench", "--bin", "tverr-bench"],
                       cwd=ROOT, env=env, check=True)
        binary = str(pathlib.Path(target) / "release" / "tverr-bench")
    rest = [a for a in args.rest if a != "--"]
    sys.exit(subprocess.run([binary, *rest]).returncode)


if __name__ == "__main__":
    main()
