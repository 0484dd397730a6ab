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
