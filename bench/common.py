"""Helpers shared by the benchmark scripts."""
import socket
import time
import urllib.request


def free_port():
    """A TCP port on loopback that nothing listens on now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait(url, tries=600):
    """Returns once `url` answers; gives up after `tries` tenths of a second."""
    for _ in range(tries):
        try:
            urllib.request.urlopen(url)
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


def fnr(rng):
    """A valid synthetic fødselsnummer (both check digits), drawn from `rng`."""
    while True:
        d, m, y, i = rng.randint(1, 28), rng.randint(1, 12) + 80, rng.randint(0, 99), rng.randint(0, 499)
        s = f"{d:02d}{m:02d}{y:02d}{i:03d}"
        digits = [int(c) for c in s]
        k1 = 11 - sum(a * b for a, b in zip(digits, [3, 7, 6, 1, 8, 9, 4, 5, 2])) % 11
        k1 = 0 if k1 == 11 else k1
        if k1 == 10:
            continue
        digits.append(k1)
        k2 = 11 - sum(a * b for a, b in zip(digits, [5, 4, 3, 2, 7, 6, 5, 4, 3, 2])) % 11
        k2 = 0 if k2 == 11 else k2
        if k2 == 10:
            continue
        return s + str(k1) + str(k2)


def release_binary(given, root):
    """The tverr binary to measure: `given`, or the release build under CARGO_TARGET_DIR (default
    ~/.cache/tverr-target), built first."""
    import os
    import pathlib
    import subprocess
    if given:
        return given
    target = os.environ.get("CARGO_TARGET_DIR", str(pathlib.Path.home() / ".cache" / "tverr-target"))
    subprocess.run(["cargo", "build", "--release", "-p", "tverr-cli"], cwd=root, check=True, env=dict(os.environ, CARGO_TARGET_DIR=target))
    return str(pathlib.Path(target) / "release" / "tverr")
