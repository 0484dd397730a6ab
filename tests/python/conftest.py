"""Shared fixtures: the tverr binary built by cargo, and a private data directory."""
import contextlib
import os
import pathlib
import socket
import subprocess
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"


def tverr_bin() -> str:
    if os.environ.get("TVERR_BIN"):
        return os.environ["TVERR_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return str(pathlib.Path(target) / "debug" / "tverr")


class Tverr:
    def __init__(self, data: pathlib.Path, env: dict | None = None):
        self.data = data
        self.env = dict(os.environ, TVERR_DATA=str(data), TVERR_ACTOR="pytest", TVERR_PURPOSE="test", **(env or {}))
        self.env.pop("TVERR_CATALOG", None)
        if not env or "TVERR_STORAGE" not in env:
            self.env.pop("TVERR_STORAGE", None)

    def run(self, *args: str) -> str:
        out = subprocess.run([tverr_bin(), *args], env=self.env, capture_output=True)
        assert out.returncode == 0, f"tverr {args} failed: {out.stderr.decode()}"
        return out.stdout.decode()

    @contextlib.contextmanager
    def serve(self):
        """`tverr serve` on a free loopback port, answering /health; yields its base URL."""
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        proc = subprocess.Popen([tverr_bin(), "serve", "--listen", f"127.0.0.1:{port}"], env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(base + "/health")
                    break
                except OSError:
                    time.sleep(0.05)
            yield base
        finally:
            proc.terminate()
            proc.wait()

    def setup_people(self):
        self.run("org", "create", "test", "--name", "Test", "--orgnr", "970540008")
        self.run("department", "create", "test/data", "--name", "Data")
        self.run("ingest", "test/people", str(DATA / "ingest" / "people.csv"), "--create", "--department", "data",
                 "--title", "Personer", "--classification", "internal", "--subject", "fodselsnummer=person")


@pytest.fixture
def tverr(tmp_path):
    return Tverr(tmp_path / "data")
