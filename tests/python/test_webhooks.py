"""Subscriptions end to end: a real `tverr serve`, a webhook receiver on loopback that checks
every event with the README's own three lines of Python, retries until the receiver answers,
a revoked agreement that withholds the next event at once, a receiver that never answers (given
up after the retry window), the refusals (SSRF, credentials in the URL, no access, no purpose),
and the API."""
import http.server
import json
import pathlib
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request

from conftest import ROOT, Tverr, tverr_bin

ENV = {
    "TVERR_WEBHOOK_ALLOW": "127.0.0.0/8",
    "TVERR_WEBHOOK_RETRY_SECONDS": "1",
    "TVERR_WEBHOOK_TICK_MS": "200",
}
FNR = ("17858012392", "01817545781", "08906906652")


def readme_check():
    """The receiver's check as the README gives it: a function of (secret, header, body, now)
    that runs the README's lines and returns their `ok` and `fresh`."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- webhook-check -->\s*```python\n(.*?)```", text, re.S)
    assert block, "the README has no webhook check"
    lines = [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("import")]
    assert len(lines) == 3, lines
    code = "\n".join(lines)

    def check(secret, header, body, now=None):
        clock = type("Clock", (), {"time": staticmethod(lambda: now if now is not None else time.time())})
        scope = {"hmac": __import__("hmac"), "hashlib": __import__("hashlib"), "time": clock,
                 "secret": secret, "header": header, "body": body}
        exec(code, scope)
        return scope["ok"], scope["fresh"]

    return check


class Receiver:
    """An HTTP server on loopback that records each POST and answers with the next of
    `statuses` (then 200)."""

    def __init__(self, statuses=()):
        self.requests = []
        self.statuses = list(statuses)
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.requests.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body, "status": status, "path": self.path})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, n, seconds=20):
        deadline = time.time() + seconds
        while len(self.requests) < n and time.time() < deadline:
            time.sleep(0.05)
        return self.requests


def write(t, name, text):
    path = t.data.parent / name
    path.write_text(text)
    return str(path)


def setup(t):
    """Organisation test: `eier` stewards test/folk in `data`; `leser` in `andre` reads it under
    an agreement for `oppfolging` with the name masked; `ukjent`, in a third department, has none."""
    t.run("org", "create", "test", "--name", "Test kommune", "--orgnr", "970540008", "--kommunenummer", "3403")
    t.run("department", "create", "test/data", "--name", "Data")
    t.run("department", "create", "test/andre", "--name", "Andre")
    t.run("user", "create", "test/data/eier", "--role", "steward")
    t.run("user", "create", "test/andre/leder", "--role", "steward")
    t.run("user", "create", "test/andre/leser", "--role", "employee")
    t.run("department", "create", "test/tredje", "--name", "Tredje")
    t.run("user", "create", "test/tredje/ukjent", "--role", "employee")
    t.run("legal-basis", "create", "test/lov", "--gdpr", "6(1)(e)", "--hjemmel", "kommuneloven § 2-1")
    t.run("purpose", "create", "test/oppfolging", "--name", "Oppfølging", "--legal-basis", "lov")
    v0 = write(t, "v0.csv", f"nr;fodselsnummer;navn\n1;{FNR[0]};Åse Ødegård\n2;{FNR[1]};Bjørn Ærø\n")
    t.run("ingest", "test/folk", v0, "--create", "--department", "data", "--title", "Folk", "--classification", "internal",
          "--subject", "fodselsnummer=person", "--category", "navn=personal")
    t.run("agreement", "request", "--as", "leder", "--provider", "test/data", "--consumer", "test/andre", "--dataset", "test/folk",
          "--columns", "nr,fodselsnummer,navn", "--mask", "navn=partial", "--purpose", "oppfolging")
    agreements = json.loads(t.run("agreement", "list", "--json"))
    agreement = str(next(a for a in agreements if a["state"] == "requested")["id"])
    t.run("agreement", "approve", agreement, "--as", "eier")
    return agreement


def fails(t, *args):
    out = subprocess.run([tverr_bin(), *args], env=t.env, capture_output=True)
    assert out.returncode != 0, f"tverr {args} should fail: {out.stdout.decode()}"
    return out.returncode, out.stderr.decode()


def subscribe(t, url, user="leser", purpose="oppfolging"):
    out = t.run("subscription", "create", "--dataset", "test/folk", "--url", url, "--as", user, "--purpose", purpose, "--json")
    made = json.loads(out)
    return made["subscription"]["id"], made["secret"]


def deliveries(t, sid, user="leser"):
    return json.loads(t.run("subscription", "deliveries", sid, "--as", user, "--json"))


def get(base, path, token, purpose=None):
    req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}", **({"Tverr-Purpose": purpose} if purpose else {})})
    with urllib.request.urlopen(req) as r:
        return r.status, r.read()


def test_events_are_signed_retried_at_least_once_and_stop_with_access(tmp_path):
    t = Tverr(tmp_path / "data", ENV)
    agreement = setup(t)
    check = readme_check()
    rx = Receiver(statuses=[503, 500])
    sid, secret = subscribe(t, rx.url + "/hook?kilde=tverr")
    assert secret.startswith("tverr_whsec_")
    listed = t.run("subscription", "list", "--as", "leser")
    assert sid in listed and secret not in listed
    with t.serve() as base:
        t.run("ingest", "test/folk", write(t, "v1.csv", f"nr;fodselsnummer;navn\n3;{FNR[2]};Kari Nordmann\n"))
        got = rx.wait(3)
        assert [r["status"] for r in got] == [503, 500, 200], got
        # At least once: the same event, with the same id, on every attempt.
        assert len({r["headers"]["tverr-event"] for r in got}) == 1
        assert len({r["body"] for r in got}) == 1
        assert got[0]["path"] == "/hook?kilde=tverr"
        for r in got:
            ok, fresh = check(secret, r["headers"]["tverr-signature"], r["body"])
            assert ok and fresh, r
        event = json.loads(got[0]["body"])
        assert event["dataset"] == "test/folk" and event["version"] == 1 and event["mode"] == "append"
        assert event["type"] == "dataset.version" and event["subscription"] == sid and event["id"] == got[0]["headers"]["tverr-event"]
        assert event["rows_written"] == 1 and event["rows_removed"] == 0
        # Never row data: no number, no name.
        for secret_value in (*FNR, "Kari", "Nordmann", "Åse"):
            assert secret_value.encode() not in got[0]["body"]
        # The link leads to the change feed, which is a read through the door: the mask holds.
        token = t.run("token", "create", "--user", "leser").strip()
        status, feed = get(base, event["changes"], token, "oppfolging")
        rows = json.loads(feed)["rows"]
        assert status == 200 and [r["nr"] for r in rows] == [3] and rows[0]["_change"] == "insert"
        assert "Nordmann" not in rows[0]["navn"]
        # A forged body, another secret, or a replay later than five minutes fails the check.
        header = got[0]["headers"]["tverr-signature"]
        assert not check(secret, header, got[0]["body"].replace(b'"version":1', b'"version":2'))[0]
        assert not check("tverr_whsec_" + "0" * 64, header, got[0]["body"])[0]
        sent = int(header.split(",")[0].split("=")[1])
        assert check(secret, header, got[0]["body"], now=sent + 10) == (True, True)
        assert check(secret, header, got[0]["body"], now=sent + 600) == (True, False)
        forged_time = header.replace(f"t={sent}", f"t={sent + 600}")
        assert not check(secret, forged_time, got[0]["body"], now=sent + 600)[0]
        # The delivery log.
        first = deliveries(t, sid)[0]
        assert first["version"] == 1 and first["state"] == "delivered" and first["attempts"] == 3 and first["last_status"] == 200
        # The agreement revoked: the next version's event is withheld at once, never sent.
        t.run("agreement", "revoke", agreement, "--as", "eier")
        t.run("ingest", "test/folk", write(t, "v2.csv", f"nr;fodselsnummer;navn\n4;{FNR[0]};Ola\n"))
        deadline = time.time() + 15
        while time.time() < deadline and deliveries(t, sid)[0]["version"] != 2:
            time.sleep(0.2)
        while time.time() < deadline and deliveries(t, sid)[0]["state"] == "pending":
            time.sleep(0.2)
        second = deliveries(t, sid)[0]
        assert second["version"] == 2 and second["state"] == "withheld", second
        assert "may no longer read test/folk" in second["last_error"]
        time.sleep(1)
        assert len(rx.requests) == 3, rx.requests[3:]


def test_a_receiver_that_never_answers_is_given_up_after_the_retry_window(tmp_path):
    t = Tverr(tmp_path / "data", {**ENV, "TVERR_WEBHOOK_GIVE_UP_SECONDS": "3"})
    setup(t)
    rx = Receiver(statuses=[500] * 100)
    sid, _ = subscribe(t, rx.url)
    with t.serve():
        t.run("ingest", "test/folk", write(t, "v1.csv", f"nr;fodselsnummer;navn\n3;{FNR[2]};Kari\n"))
        deadline = time.time() + 20
        while time.time() < deadline and (not deliveries(t, sid) or deliveries(t, sid)[0]["state"] == "pending"):
            time.sleep(0.2)
        last = deliveries(t, sid)[0]
        assert last["state"] == "failed", last
        assert last["attempts"] >= 2 and "HTTP 500" in last["last_error"] and "given up" in last["last_error"]
        tried = len(rx.requests)
        time.sleep(2)
        assert len(rx.requests) == tried, "no attempt after giving up"


def test_refusals_say_why_and_keep_nothing(tmp_path):
    t = Tverr(tmp_path / "data", {k: v for k, v in ENV.items() if k != "TVERR_WEBHOOK_ALLOW"})
    setup(t)
    # Loopback, private and link-local addresses are refused unless the operator allows them.
    for url in ("http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "http://169.254.169.254/latest/meta-data",
                "http://[::1]/hook", "http://[::ffff:127.0.0.1]/hook", "http://localhost/hook"):
        code, err = fails(t, "subscription", "create", "--dataset", "test/folk", "--url", url, "--as", "leser", "--purpose", "oppfolging")
        assert "refused" in err or "not allowed" in err, (url, err)
    for url, needle in (("file:///etc/passwd", "only http and https"), ("ftp://example.org/x", "only http and https"),
                        ("https://bruker:passord@example.org/hook", "user name or password"), ("ikke en url", "not a URL")):
        code, err = fails(t, "subscription", "create", "--dataset", "test/folk", "--url", url, "--as", "leser", "--purpose", "oppfolging")
        assert needle in err, (url, err)
        assert "passord" not in err
    # A user who may not read the dataset is told it is not there; a missing purpose is asked for.
    code, err = fails(t, "subscription", "create", "--dataset", "test/folk", "--url", "https://example.org/hook", "--as", "ukjent",
                      "--purpose", "oppfolging")
    assert "no dataset test/folk exists that you may read" in err, err
    code, err = fails(t, "subscription", "create", "--dataset", "test/folk", "--url", "https://example.org/hook", "--as", "leser")
    assert "purpose" in err, err
    code, err = fails(t, "subscription", "create", "--dataset", "test/folk", "--url", "https://example.org/hook", "--purpose", "oppfolging")
    assert "--as" in err, err
    assert json.loads(t.run("subscription", "list", "--json")) == []


def test_the_api_makes_lists_shows_and_deletes_only_ones_own(tmp_path):
    t = Tverr(tmp_path / "data", ENV)
    setup(t)
    rx = Receiver()
    leser = t.run("token", "create", "--user", "leser").strip()
    eier = t.run("token", "create", "--user", "eier").strip()

    def call(base, method, path, token, body=None):
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        req = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    with t.serve() as base:
        status, made = call(base, "POST", "/api/v1/subscriptions", leser,
                            {"dataset": "test/folk", "url": rx.url + "/api-hook", "purpose": "oppfolging"})
        assert status == 201, made
        sid = made["subscription"]["id"]
        assert made["secret"].startswith("tverr_whsec_")
        status, listed = call(base, "GET", "/api/v1/subscriptions", leser)
        assert status == 200 and [s["id"] for s in listed["subscriptions"]] == [sid]
        assert made["secret"] not in json.dumps(listed)
        # Another user's subscription is not there for them.
        assert call(base, "GET", f"/api/v1/subscriptions/{sid}", eier)[0] == 404
        assert call(base, "DELETE", f"/api/v1/subscriptions/{sid}", eier)[0] == 404
        assert call(base, "GET", "/api/v1/subscriptions", eier)[1]["subscriptions"] == []
        # Bad bodies are located; a dataset one may not read is 404, a missing purpose 403.
        status, problem = call(base, "POST", "/api/v1/subscriptions", leser, b'{"dataset": "test/folk",\n "url": 5}')
        assert status == 400 and "line 2" in problem["detail"], problem
        status, problem = call(base, "POST", "/api/v1/subscriptions", leser, {"dataset": "test/folk", "url": rx.url, "ekstra": 1})
        assert status == 400 and "ekstra" in problem["detail"], problem
        assert call(base, "POST", "/api/v1/subscriptions", leser, {"dataset": "test/hemmelig", "url": rx.url, "purpose": "oppfolging"})[0] == 404
        assert call(base, "POST", "/api/v1/subscriptions", leser, {"dataset": "test/folk", "url": rx.url})[0] == 403
        t.run("ingest", "test/folk", write(t, "v1.csv", f"nr;fodselsnummer;navn\n3;{FNR[2]};Kari\n"))
        assert len(rx.wait(1)) == 1
        status, log = call(base, "GET", f"/api/v1/subscriptions/{sid}/deliveries", leser)
        assert status == 200 and log["deliveries"][0]["state"] == "delivered"
        assert call(base, "DELETE", f"/api/v1/subscriptions/{sid}", leser)[0] == 204
        assert call(base, "GET", f"/api/v1/subscriptions/{sid}", leser)[0] == 404
        t.run("ingest", "test/folk", write(t, "v2.csv", f"nr;fodselsnummer;navn\n5;{FNR[2]};Per\n"))
        time.sleep(1.5)
        assert len(rx.requests) == 1, "a deleted subscription has no more events"
