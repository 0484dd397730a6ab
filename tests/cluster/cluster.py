"""Several `tverr serve` nodes on one PostgreSQL catalogue and one S3 bucket, as real processes.

`Cluster` starts a private PostgreSQL cluster, an S3-compatible server (moto, which implements
conditional writes: `If-None-Match: *` on PUT answers 412 when the object exists), a proxy in
front of it that can answer 503 or answer slowly, and N nodes on loopback. Every node has its own
data directory holding copies of the same keys, as a real deployment does; nothing else is
shared between them but the catalogue and the bucket.
"""
from __future__ import annotations

import http.client
import http.server
import json
import os
import pathlib
import shutil
import signal
import socket
import socketserver
import subprocess
import threading
import time
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUCKET = "tverr-cluster"
# The write lease the nodes run with: short, so the stop phase is quick.
LEASE_SECONDS = 5


def tverr_bin() -> str:
    if os.environ.get("TVERR_BIN"):
        return os.environ["TVERR_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return str(pathlib.Path(target) / "debug" / "tverr")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(what: str, check, seconds: float = 30.0, every: float = 0.05):
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        try:
            got = check()
            if got:
                return got
        except Exception as e:  # noqa: BLE001 - the last error is reported below
            last = e
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {seconds} s (last error: {last})")


class Faults:
    """What the S3 proxy does to each request: pass it on, answer 503, or wait first; or
    `commit503`: pass on the next PUT of a Delta log entry, then answer 503 to everything (storage
    that stops answering right after a commit landed)."""

    def __init__(self):
        self.mode = "pass"
        self.delay = 0.0
        self.lock = threading.Lock()

    def set(self, mode: str, delay: float = 0.0):
        with self.lock:
            self.mode, self.delay = mode, delay


def s3_proxy(upstream_port: int, faults: Faults) -> tuple[socketserver.ThreadingTCPServer, int]:
    """An HTTP proxy to the S3 server that obeys `faults`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            with faults.lock:
                mode, delay = faults.mode, faults.delay
                if mode == "commit503" and self.command == "PUT" and "/_delta_log/" in self.path and ".json" in self.path:
                    faults.mode = "503"
                    mode = "pass"
                elif mode == "commit503":
                    mode = "pass"
            if mode == "503":
                payload = b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>"
                self.send_response(503)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            if mode == "slow":
                time.sleep(delay)
            conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
            headers = {k: v for k, v in self.headers.items()}
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

        def handle_error(self, request, client_address):
            pass  # a client (a killed node) that went away mid-request

    port = free_port()
    server = Server(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, port


def headers_of(message) -> dict:
    """Response headers by their canonical names (`Retry-After`), whatever case the server sent."""
    return {"-".join(p.capitalize() for p in k.split("-")): v for k, v in message.items()}


class Node:
    def __init__(self, cluster: "Cluster", index: int):
        self.cluster = cluster
        self.index = index
        self.data = cluster.work / f"node{index}"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = cluster.work / f"node{index}.log"

    def env(self) -> dict:
        env = self.cluster.env()
        env["TVERR_DATA"] = str(self.data)
        env["TVERR_AUDIT_WITNESS"] = str(self.data / "audit-witness.ndjson")
        return env

    def start(self):
        self.data.mkdir(parents=True, exist_ok=True)
        for name in ("audit-key.pk8", "subject-key", "connector-key"):
            src = self.cluster.keys / name
            if src.exists() and not (self.data / name).exists():
                shutil.copy2(src, self.data / name)
        out = open(self.log, "ab")
        self.proc = subprocess.Popen([tverr_bin(), "serve", "--listen", f"127.0.0.1:{self.port}"], env=self.env(),
                                     stdout=out, stderr=out, start_new_session=True)
        wait_for(f"node {self.index} to be ready", lambda: self.status("/ready") == 200, 120)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def status(self, path: str) -> int:
        return self.request("GET", path)[0]

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 60) -> tuple[int, dict, bytes]:
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, headers_of(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, headers_of(e.headers), e.read()


class Cluster:
    def __init__(self, work: pathlib.Path, nodes: int = 3):
        self.work = work
        self.keys = work / "keys"
        self.pg_bin = sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin"))[-1]
        self.pg_data = work / "pg"
        self.pg_port = free_port()
        self.moto_port = free_port()
        self.faults = Faults()
        self.proxy = None
        self.proxy_port = None
        self.moto: subprocess.Popen | None = None
        self.nodes = [Node(self, i) for i in range(nodes)]

    # --- services -------------------------------------------------------------------------
    def as_pg(self, *args: str, **kw) -> subprocess.CompletedProcess:
        cmd = [*args]
        if os.getuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, **kw)

    def start_services(self):
        self.work.mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:
            shutil.chown(self.work, "postgres")
        out = self.as_pg(str(self.pg_bin / "initdb"), "-D", str(self.pg_data), "-A", "trust", "-U", "postgres", "--no-sync")
        assert out.returncode == 0, out.stderr.decode()
        self.start_pg()
        self.moto = subprocess.Popen(["python3", "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.moto_port)],
                                     stdout=open(self.work / "moto.log", "wb"), stderr=subprocess.STDOUT)
        wait_for("the S3 server", lambda: urllib.request.urlopen(f"http://127.0.0.1:{self.moto_port}/").status == 200)
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{self.moto_port}/{BUCKET}", method="PUT"))
        self.proxy, self.proxy_port = s3_proxy(self.moto_port, self.faults)

    def start_pg(self):
        out = self.as_pg(str(self.pg_bin / "pg_ctl"), "-D", str(self.pg_data), "-o",
                         f"-p {self.pg_port} -k {self.work} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                         "-l", str(self.work / "pg.log"), "-w", "start")
        assert out.returncode == 0, out.stderr.decode() + out.stdout.decode()

    def stop_pg(self):
        self.as_pg(str(self.pg_bin / "pg_ctl"), "-D", str(self.pg_data), "-m", "immediate", "-w", "stop")

    def stop(self):
        for n in self.nodes:
            n.kill()
        if self.moto:
            self.moto.kill()
        if self.proxy:
            self.proxy.shutdown()
        self.stop_pg()

    # --- tverr ------------------------------------------------------------------------------
    @property
    def catalog_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.pg_port}/postgres"

    def env(self) -> dict:
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("TVERR_") or k.startswith("AWS_"):
                env.pop(k)
        env.update({
            "TVERR_DATA": str(self.keys),
            "TVERR_CATALOG": self.catalog_url,
            "TVERR_STORAGE": f"s3://{BUCKET}/lake",
            "TVERR_AUDIT_WITNESS": "off",
            "TVERR_ACTOR": "cluster-test",
            "TVERR_WRITE_LEASE_SECONDS": str(LEASE_SECONDS),
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.proxy_port}",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        })
        return env

    def tverr(self, *args: str, check: bool = True, stdin: bytes | None = None) -> subprocess.CompletedProcess:
        out = subprocess.run([tverr_bin(), *args], env=self.env(), capture_output=True, input=stdin, timeout=300)
        if check and out.returncode != 0:
            raise AssertionError(f"tverr {' '.join(args)} failed ({out.returncode}): {out.stderr.decode()}")
        return out

    def start_nodes(self):
        for n in self.nodes:
            n.start()

    def pg(self, sql: str) -> list[list[str]]:
        out = subprocess.run(["psql", self.catalog_url, "-At", "-F", "\t", "-c", sql], capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr.decode()
        return [line.split("\t") for line in out.stdout.decode().splitlines() if line]

    def popen(self, *args: str) -> subprocess.Popen:
        """A `tverr` command started and left running (to be killed)."""
        return subprocess.Popen([tverr_bin(), *args], env=self.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
