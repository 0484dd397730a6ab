#!/usr/bin/env python3
"""How fast the web pages answer: requests per second and median latency (wrk -t2 -c8) of the
main pages, anonymous and logged in, against a release build serving the demo municipality.

    python3 bench/web/run.py --tverr ~/.cache/tverr-target/release/tverr [--persons 32000] [--seconds 10]

There is no peer here that renders the same pages; the figures are absolute and meant to be
compared between commits on the same machine.
"""
import argparse
import http.client
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import urllib.parse

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from common import free_port, wait  # noqa: E402

PASSWORD = "hamar-demo-2026"


def session(port, user):
    """Logs in through the form; returns the Cookie header value."""
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("GET", "/logg-inn")
    r = c.getresponse()
    page = r.read().decode()
    pre = re.search(r"tverr_csrf=([0-9a-f]+)", r.getheader("set-cookie") or "").group(1)
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
    body = urllib.parse.urlencode({"csrf": csrf, "username": user, "password": PASSWORD})
    c.request("POST", "/logg-inn", body, {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"tverr_csrf={pre}"})
    r = c.getresponse()
    r.read()
    cookie = re.search(r"tverr_session=([^;]+)", r.getheader("set-cookie") or "")
    if r.status != 303 or not cookie:
        raise SystemExit(f"log-in of {user} failed: {r.status}")
    return f"tverr_session={cookie.group(1)}"


def wrk(url, seconds, cookie=None):
    cmd = ["wrk", "-t2", "-c8", f"-d{seconds}s", "--latency"]
    if cookie:
        cmd += ["-H", f"Cookie: {cookie}"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"50%\s+([\d.]+)(\w+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(\w+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} error responses")
    return rate, f"{p50.group(1)} {p50.group(2)}", f"{p99.group(1)} {p99.group(2)}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tverr", required=True)
    ap.add_argument("--persons", type=int, default=32000)
    ap.add_argument("--seconds", type=int, default=10)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, TVERR_DATA=str(pathlib.Path(tmp) / "data"), TVERR_QUERIES_PER_PRINCIPAL="16")
        subprocess.run([a.tverr, "demo", "--persons", str(a.persons)], env=env, check=True, capture_output=True)
        fnr = subprocess.run([a.tverr, "sql", "--purpose", "folkeregisterforvaltning", "--format", "csv",
                              "SELECT fodselsnummer FROM hamar.innbyggere ORDER BY fodselsnummer LIMIT 1"],
                             env=env, check=True, capture_output=True, text=True).stdout.split()[1]
        port = free_port()
        server = subprocess.Popen([a.tverr, "serve", "--demo", "--listen", f"127.0.0.1:{port}"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            wait(base + "/health", tries=1200)
            ola, tove = session(port, "ola"), session(port, "tove")
            pages = [
                ("catalogue (anonymous)", "/", None),
                ("catalogue search 'barnehage' (ola)", "/?q=barnehage", ola),
                ("free kindergarten places", "/apne-data/ledige-barnehageplasser?alder=2", None),
                ("dataset page, open, map", "/datasett/hamar/barnehager", None),
                ("dataset page, open, time series chart", "/datasett/hias/vannkvalitet", None),
                ("dataset page, confidential, masked preview (ola)", "/datasett/hamar/innbyggere?purpose=byggesaksbehandling", ola),
                ("look-up of a person (tove)", f"/oppslag?purpose=innbyggerservice&kind=person&id={fnr}", tove),
                ("API page", "/api", None),
            ]
            print(f"{a.persons} persons, wrk -t2 -c8 -d{a.seconds}s")
            print(f"{'page':55} {'req/s':>8} {'p50':>10} {'p99':>10}")
            for name, path, cookie in pages:
                rate, p50, p99 = wrk(base + path, a.seconds, cookie)
                print(f"{name:55} {rate:8.1f} {p50:>10} {p99:>10}")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
