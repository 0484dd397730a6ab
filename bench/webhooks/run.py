#!/usr/bin/env python3
"""Webhook fan-out benchmark: how long after a commit every one of --subscriptions subscriptions
has had its event.

It makes a data directory with one dataset and readers under an agreement (100 subscriptions
each, the most one user may have), starts `tverr serve`
(release build) and a receiver on loopback that answers 204 and notes when each event arrived,
makes --subscriptions subscriptions over the API (all to the receiver, each its own path), and
then, --runs times, commits a new version with `tverr ingest` (another process, as a connector on
another node or an operator would) and times from the moment the ingest command returns to the
arrival of the last event. Every event's signature is checked. Prints each run, the median and
the target (< 5 s).

Usage: python3 bench/webhooks/run.py [--subscriptions 1000] [--runs 5] [--tverr PATH]
"""
import argparse
import hashlib
import hmac
import http.server
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from common import fnr, free_port, release_binary, wait  # noqa: E402


class Receiver:
    def __init__(self):
        self.arrivals = {}
        self.bad = 0
        self.secrets = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                at = time.monotonic()
                event = json.loads(body)
                secret = receiver.secrets.get(event["subscription"], "")
                t, v1 = (part.split("=", 1)[1] for part in self.headers["Tverr-Signature"].split(","))
                ok = hmac.compare_digest(v1, hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest())
                with receiver.lock:
                    receiver.arrivals[(event["subscription"], event["version"])] = at
                    receiver.bad += 0 if ok else 1
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.request_queue_size = 1024
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--subscriptions", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tverr", default=None)
    args = ap.parse_args()
    tverr = release_binary(args.tverr, ROOT)
    work = pathlib.Path(tempfile.mkdtemp(prefix="tverr-bench-hooks-"))
    env = dict(os.environ, TVERR_DATA=str(work / "data"), TVERR_WEBHOOK_ALLOW="127.0.0.0/8")
    env.pop("TVERR_CATALOG", None)
    env.pop("TVERR_STORAGE", None)

    def cli(*a):
        return subprocess.run([tverr, *a], env=env, check=True, capture_output=True, text=True).stdout

    import random
    rng = random.Random(7)
    cli("org", "create", "test", "--name", "Test", "--orgnr", "970540008")
    cli("department", "create", "test/data", "--name", "Data")
    cli("department", "create", "test/andre", "--name", "Andre")
    cli("user", "create", "test/data/eier", "--role", "steward")
    cli("user", "create", "test/andre/leder", "--role", "steward")
    # One user may have 100 subscriptions: the consumers are several readers of one department.
    readers = [f"leser{i}" for i in range((args.subscriptions + 99) // 100)]
    for r in readers:
        cli("user", "create", f"test/andre/{r}", "--role", "employee")
    cli("legal-basis", "create", "test/lov", "--gdpr", "6(1)(e)", "--hjemmel", "kommuneloven § 2-1")
    cli("purpose", "create", "test/oppfolging", "--name", "Oppfølging", "--legal-basis", "lov")
    first = work / "v0.csv"
    first.write_text("nr;fodselsnummer;navn\n" + "".join(f"{i};{fnr(rng)};Navn {i}\n" for i in range(100)))
    cli("ingest", "test/folk", str(first), "--create", "--department", "data", "--title", "Folk", "--classification", "internal",
        "--subject", "fodselsnummer=person")
    cli("agreement", "request", "--as", "leder", "--provider", "test/data", "--consumer", "test/andre", "--dataset", "test/folk",
        "--purpose", "oppfolging")
    agreement = next(a for a in json.loads(cli("agreement", "list", "--json")) if a["state"] == "requested")["id"]
    cli("agreement", "approve", str(agreement), "--as", "eier")
    tokens = [cli("token", "create", "--user", r).strip() for r in readers]

    rx = Receiver()
    port = free_port()
    server = subprocess.Popen([tverr, "serve", "--listen", f"127.0.0.1:{port}"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait(base + "/health")
        made = time.monotonic()
        for i in range(args.subscriptions):
            body = json.dumps({"dataset": "test/folk", "url": f"{rx.url}/s/{i}", "purpose": "oppfolging"}).encode()
            req = urllib.request.Request(base + "/api/v1/subscriptions", data=body, method="POST",
                                         headers={"Authorization": f"Bearer {tokens[i // 100]}", "Content-Type": "application/json"})
            with urllib.request.urlopen(req) as r:
                answer = json.loads(r.read())
            rx.secrets[answer["subscription"]["id"]] = answer["secret"]
        print(f"{args.subscriptions} subscriptions made over the API in {time.monotonic() - made:.1f} s")
        times = []
        for run in range(1, args.runs + 1):
            version = run
            row = work / f"v{version}.csv"
            row.write_text(f"nr;fodselsnummer;navn\n{1000 + run};{fnr(rng)};Ny {run}\n")
            cli("ingest", "test/folk", str(row))
            committed = time.monotonic()
            deadline = committed + 120
            while time.monotonic() < deadline:
                with rx.lock:
                    got = [at for (sid, v), at in rx.arrivals.items() if v == version]
                if len(got) == args.subscriptions:
                    break
                time.sleep(0.01)
            if len(got) < args.subscriptions:
                raise SystemExit(f"run {run}: only {len(got)} of {args.subscriptions} events in 120 s")
            elapsed = max(got) - committed
            times.append(elapsed)
            print(f"run {run}: all {args.subscriptions} events {elapsed:.2f} s after the commit "
                  f"(first {min(got) - committed:.2f} s)")
        if rx.bad:
            raise SystemExit(f"{rx.bad} events failed the signature check")
        median = statistics.median(times)
        print(f"median: {median:.2f} s for {args.subscriptions} subscriptions (target < 5 s): {'met' if median < 5 else 'NOT met'}")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
