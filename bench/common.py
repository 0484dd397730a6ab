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
