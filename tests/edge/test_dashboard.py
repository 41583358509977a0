"""The dashboard in a real headless Chromium (Debian's `chromium`) against a real EdgeApp and a
real loopback target: what the page shows must be what the API answers for the same state, its
buttons must change that state, and it must say when the API is unreachable or refuses it.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON
messages ending in a NUL byte on fds 3 and 4), so nothing but the browser is needed. Without
Chromium the tests skip, except under CI=true, where they fail (.ci/run installs it).
"""

import asyncio
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from flowcatalyst.edge.activity import DeliveryHistory
from tests.support.edgeapp import EdgeRunner, eventually, pointer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
)


EXEC_WITH_PIPE = "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); os.execv(sys.argv[3], sys.argv[3:])"


def _high_fd(fd):
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Browser:
    """A headless Chromium with a fresh profile, driven over the DevTools pipe."""

    def __init__(self, executable):
        self.profile = tempfile.mkdtemp(prefix="fc-chromium-")
        to_chrome, self._out = os.pipe()
        self._in, from_chrome = os.pipe()
        # The browser expects the pipe on fds 3 and 4: a small Python moves them there and execs it
        # (preexec_fn is unsafe with the edge's threads running; dash cannot name fds above 9).
        to_chrome, from_chrome = (_high_fd(fd) for fd in (to_chrome, from_chrome))
        command = [sys.executable, "-c", EXEC_WITH_PIPE, str(to_chrome), str(from_chrome), executable, *FLAGS, "--user-data-dir=" + self.profile, "about:blank"]
        self.proc = subprocess.Popen(command, pass_fds=(to_chrome, from_chrome), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome)
        os.close(from_chrome)
        self.handlers = {}  # event method -> fn(params, session id), run on the reader thread
        self.dialogs = []
        self._next = 0
        self._answers = {}
        self._closed = False
        self._cond = threading.Condition()
        self._write = threading.Lock()
        threading.Thread(target=self._read, name="chromium-pipe", daemon=True).start()
        self.handlers["Page.javascriptDialogOpening"] = self._accept_dialog

    def _read(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self._in, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, _, buf = buf.partition(b"\0")
                message = json.loads(raw)
                if "id" in message:
                    with self._cond:
                        self._answers[message["id"]] = message
                        self._cond.notify_all()
                elif message.get("method") in self.handlers:
                    self.handlers[message["method"]](message.get("params", {}), message.get("sessionId"))
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _accept_dialog(self, params, session):
        self.dialogs.append(params["message"])
        self.send("Page.handleJavaScriptDialog", {"accept": True}, session)

    def send(self, method, params=None, session=None):
        with self._write:
            self._next += 1
            message = {"id": self._next, "method": method, "params": params or {}}
            if session:
                message["sessionId"] = session
            os.write(self._out, json.dumps(message).encode() + b"\0")
            return self._next

    def call(self, method, params=None, session=None, timeout=15):
        ident = self.send(method, params, session)
        with self._cond:
            if not self._cond.wait_for(lambda: ident in self._answers or self._closed, timeout):
                raise AssertionError("Chromium did not answer %s within %s s" % (method, timeout))
            if ident not in self._answers:
                raise AssertionError("Chromium exited")
            answer = self._answers.pop(ident)
        if "error" in answer:
            raise AssertionError("%s failed: %s" % (method, answer["error"]))
        return answer["result"]

    def tab(self):
        return Tab(self)

    def close(self):
        try:
            self.call("Browser.close", timeout=5)
            self.proc.wait(5)
        except Exception:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self._out)
        shutil.rmtree(self.profile, ignore_errors=True)


class Tab:
    """A page in a browser context of its own (no cookies, cache or HTTP credentials shared)."""

    def __init__(self, browser):
        self.browser = browser
        self.context = browser.call("Target.createBrowserContext")["browserContextId"]
        target = browser.call("Target.createTarget", {"url": "about:blank", "browserContextId": self.context})["targetId"]
        self.session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Page.enable")

    def call(self, method, params=None):
        return self.browser.call(method, params, self.session)

    def goto(self, url, refused=False):
        result = self.call("Page.navigate", {"url": url})
        if refused:  # headless Chromium cancels an HTTP auth challenge it has no credentials for
            assert result.get("errorText") == "net::ERR_INVALID_AUTH_CREDENTIALS", result
        else:
            assert "errorText" not in result, result

    def eval(self, expression, await_promise=False):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": await_promise})
        if "exceptionDetails" in result:
            raise AssertionError("page script failed: %s" % json.dumps(result["exceptionDetails"])[:800])
        return result["result"].get("value")

    def wait(self, expression, timeout=10.0, what=None):
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.eval(expression)
            except AssertionError:  # navigating: the context is not there yet
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for %s; the page shows: %s" % (what or expression, self.text()[:1500]))
            time.sleep(0.05)

    def text(self):
        try:
            return self.eval("document.body ? document.body.innerText : ''") or ""
        except AssertionError:
            return ""

    def shown(self):
        """What the dashboard shows: every table as a list of {column header: cell text}, and the
        texts around them."""
        return self.eval(READ_PAGE)

    def refresh(self):
        """Make the page fetch everything now; returns when it has shown the result."""
        self.eval("window.fcDashboard.refresh()", await_promise=True)

    def click(self, selector):
        self.eval("document.querySelector(%s).click()" % json.dumps(selector))


READ_PAGE = """(() => {
  const text = (id) => document.getElementById(id).innerText.trim();
  const tables = {};
  for (const t of document.querySelectorAll("table")) {
    const heads = Array.from(t.tHead.rows[0].cells, (c) => c.innerText.trim() || "actions");
    tables[t.id] = Array.from(t.tBodies[0].rows).filter((r) => !r.classList.contains("empty")).map((r) => {
      const row = {};
      Array.from(r.cells).forEach((c, i) => { row[heads[i]] = c.innerText.trim(); });
      return row;
    });
  }
  return {
    tables, status: text("status"), version: text("version"), issues: text("issues"),
    banner: document.getElementById("banner").hidden ? "" : text("banner"),
    notice: document.getElementById("notice").hidden ? "" : text("notice"),
    state: document.body.dataset.state, refreshes: Number(document.body.dataset.refreshes),
    bars: document.querySelectorAll("#rate-chart rect").length,
    succeeded15: text("rate-15-succeeded"), failed15: text("rate-15-failed"),
    totalSucceeded: text("total-succeeded"), totalFailed: text("total-failed"),
  };
})()"""


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is required under CI=true for the dashboard test: apt-get install chromium")
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium): the dashboard is not tested in a browser")
    b = Browser(CHROMIUM)
    yield b
    b.close()


# -- what the page should show, computed from the API -----------------------------------------


def count(n):
    return "{:,}".format(n)


def number(text):
    return float(text.replace(",", "").split()[0])


def seconds(text):
    """'12 s', '3 min 4 s', '1 h 2 min' as seconds."""
    parts = text.split()
    unit = {"s": 1, "min": 60, "h": 3600}
    return sum(int(parts[i]) * unit[parts[i + 1]] for i in range(0, len(parts), 2))


def expected(c):
    """The dashboard's tables as the API has them now. Processing times and the age of the
    oldest pending message are left out here (they are compared with a tolerance)."""
    pools = c.get("/monitoring/pools").json()
    queues = c.get("/monitoring/queues").json()
    breakers = c.get("/monitoring/circuit-breakers").json()
    warnings = c.get("/monitoring/warnings").json()
    dead = c.get("/api/dead-letters").json()
    return {
        "status": c.get("/monitoring").json()["status"],
        "pools": {
            p["pool_code"]: {
                "Concurrency": count(p["concurrency"]),
                "Active workers": count(p["active_workers"]),
                "Queued": count(p["queue_size"]),
                "Capacity": count(p["queue_capacity"]),
                "Rate limit /min": "none" if p["rate_limit_per_minute"] is None else count(p["rate_limit_per_minute"]),
                "Success rate": "%.1f %%" % (p["metrics"]["successRate"] * 100),
                "Succeeded": count(p["metrics"]["totalSuccess"]),
                "Failed": count(p["metrics"]["totalFailure"]),
                "Rate limited": count(p["metrics"]["totalRateLimited"]),
            }
            for p in pools
        },
        "queues": {
            q["queue_identifier"]: {
                "Pending": count(q["pending_messages"]),
                "In flight": count(q["in_flight_messages"]),
                "Delayed": count(q["delayed_messages"]),
                "Dead letters": count(q["dead_letters"]),
            }
            for q in queues
        },
        "breakers": {
            b["name"]: {
                "State": b["state"],
                "Failure rate": "%.1f %%" % b["failureRate"],
                "Failed": count(b["failedCalls"]),
                "Succeeded": count(b["successfulCalls"]),
                "Rejected": count(b["rejectedCalls"]),
            }
            for b in breakers.values()
        },
        "warnings": {w["id"]: {"Severity": w["severity"], "Category": w["category"], "Message": w["message"], "Source": w["source"]} for w in warnings if not w["acknowledged"]},
        "dead": {d["messageId"]: {"Queue": d["queue"], "Reason": d["reason"], "Receives": count(d["receiveCount"])} for d in dead["deadLetters"]},
    }


def as_shown(page, processing):
    """The page's tables in the shape of `expected` (processing times split off)."""
    rows = page["tables"]
    pools = {}
    for r in rows["pools"]:
        processing[r["Pool"]] = (number(r["p50 ms"]), number(r["p95 ms"]))
        pools[r["Pool"]] = {k: v for k, v in r.items() if k not in ("Pool", "p50 ms", "p95 ms")}
    keep = ("Pending", "In flight", "Delayed", "Dead letters")
    return {
        "status": page["status"],
        "pools": pools,
        "queues": {r["Queue"]: {k: r[k] for k in keep} for r in rows["queues"]},
        "breakers": {r["Target"]: {k: v for k, v in r.items() if k not in ("Target", "actions")} for r in rows["breakers"]},
        "warnings": [(r["Severity"], r["Category"], r["Message"], r["Source"]) for r in rows["warnings"]],
        "dead": {r["Message id"]: {"Queue": r["Queue"], "Reason": r["Reason"], "Receives": r["Receives"]} for r in rows["dead-letters"]},
    }


def check_page_matches_api(tab, c, attempts=20):
    """Read the API, make the page refresh, read the API again: when both readings agree (the
    state held still), the page must show exactly that. Returns (page, API state)."""
    for _ in range(attempts):
        before = expected(c)
        tab.refresh()
        page = tab.shown()
        after = expected(c)
        if before != after:
            continue
        processing = {}
        shown = as_shown(page, processing)
        api = dict(after)
        api["warnings"] = [(w["Severity"], w["Category"], w["Message"], w["Source"]) for w in after["warnings"].values()]
        assert shown == api
        for p in c.get("/monitoring/pools").json():
            t = p["metrics"]["processingTime"]
            assert processing[p["pool_code"]] == pytest.approx((t["p50Ms"], t["p95Ms"]), abs=0.051), p["pool_code"]
        return page, after
    raise AssertionError("the edge's state did not hold still for one page refresh")


class Hold:
    """A target path that answers only when released."""

    def __init__(self):
        self.released = threading.Event()

    async def __call__(self, rec):
        while not self.released.is_set():
            await asyncio.sleep(0.01)
        return 200, {}, {"ack": True}


CONFIG = {
    "processingPools": [
        {"code": "WEBHOOKS", "concurrency": 4, "rateLimitPerMinute": 6000},
        {"code": "FAILING", "concurrency": 12},
        {"code": "SLOW", "concurrency": 1},
    ],
    "queues": [{"queueName": "main"}, {"queueName": "backlog"}, {"queueName": "fragile", "maxReceiveCount": 1}],
}


def test_dashboard_shows_what_the_api_answers_and_its_buttons_work(tmp_path, target, browser):
    hold = Hold()
    target.on("/hold", hold)
    ok, failing, flaky, broken = target.url("/ok"), target.url("/status/500"), target.url("/flaky/3/replayed"), target.url("/status/503")
    try:
        with EdgeRunner(tmp_path, config=CONFIG) as edge, edge.client() as c:

            def publish(queue, *pointers):
                r = c.post("/api/messages", json={"queue": queue, "messages": list(pointers)})
                assert r.status_code == 200 and r.json()["accepted"] == len(pointers), r.text

            publish("main", *[pointer(ok, "ok-%d" % i, poolCode="WEBHOOKS") for i in range(7)])
            publish("main", *[pointer(failing, "fail-%d" % i, poolCode="FAILING") for i in range(10)])  # opens the breaker
            # a message group whose head is held in flight: the rest of the group waits, pending
            group = dict(poolCode="SLOW", messageGroupId="order-1", dispatchMode="BLOCK_ON_ERROR")
            publish("backlog", pointer(target.url("/hold"), "held-0", **group))
            target.wait_for(1, "/hold")
            publish("backlog", *[pointer(target.url("/hold"), "held-%d" % i, **group) for i in (1, 2, 3)])
            publish("main", pointer(ok, "lost", poolCode="NO-SUCH-POOL"))  # a ROUTING warning
            # maxReceiveCount 1: each fails three times in the mediator (~3 s), then is dead
            publish("fragile", pointer(flaky, "dl-replay", poolCode="WEBHOOKS"), pointer(broken, "dl/delete me", poolCode="WEBHOOKS"))

            tab = browser.tab()
            tab.goto(edge.url("/dashboard?refresh=1"))  # the page must show the state as it forms
            tab.wait("document.body.dataset.state === 'ok'", what="the first refresh")
            assert tab.shown()["version"] == edge.app.version

            eventually(lambda: c.get("/api/dead-letters").json()["total"] == 2, timeout=15, what="two dead letters")
            eventually(lambda: c.get("/monitoring/circuit-breakers").json()[failing]["state"] == "OPEN", what="the breaker to open")
            # the page refreshes itself: the breaker opened seconds after the page was loaded
            tab.wait("document.querySelector('#breakers tbody tr').innerText.includes('OPEN')", what="the open breaker on the page")
            assert tab.shown()["refreshes"] >= 2

            page, api = check_page_matches_api(tab, c)
            assert page["state"] == "ok" and page["banner"] == ""
            assert page["version"] == c.get("/monitoring").json()["version"]
            assert api["breakers"][failing]["State"] == "OPEN"
            assert set(api["dead"]) == {"dl-replay", "dl/delete me"}
            assert "HTTP 503" in api["dead"]["dl/delete me"]["Reason"]
            [routing] = [i for i, w in api["warnings"].items() if "NO-SUCH-POOL" in w["Message"]]
            assert api["warnings"][routing]["Category"] == "ROUTING"
            assert api["pools"]["SLOW"]["Active workers"] == "1" and api["queues"]["backlog"]["Pending"] == "3"
            assert "Pool FAILING" in page["issues"]  # the health issues, as /monitoring lists them

            # the age of the oldest pending message, against the API's, read around it
            before = c.get("/monitoring/activity").json()["oldestPendingAgeSeconds"]["backlog"]
            tab.refresh()
            [backlog] = [r for r in tab.shown()["tables"]["queues"] if r["Queue"] == "backlog"]
            after = c.get("/monitoring/activity").json()["oldestPendingAgeSeconds"]["backlog"]
            assert before >= 1 and before - 0.5 <= seconds(backlog["Oldest pending"]) <= after + 0.5

            # the delivery rate: the chart's figures are the API's history
            activity = c.get("/monitoring/activity").json()
            tab.refresh()
            page = tab.shown()
            succeeded, failed = activity["columns"].index("succeeded"), activity["columns"].index("failed")
            assert page["succeeded15"] == count(sum(p[succeeded] for p in activity["points"]))
            assert page["failed15"] == count(sum(p[failed] for p in activity["points"]))
            assert (page["totalSucceeded"], page["totalFailed"]) == (count(activity["totals"]["succeeded"]), count(activity["totals"]["failed"]))
            assert activity["totals"] == {"succeeded": 8, "failed": 12}  # 7 + lost; 10 + the two dead letters
            assert page["bars"] >= 2  # succeeded and failed bars

            # the buttons
            tab.click("#warnings tr[data-key='%s'] button" % routing)
            eventually(lambda: [w["acknowledged"] for w in c.get("/monitoring/warnings").json() if w["id"] == routing] == [True], what="the acknowledgement")
            tab.wait("document.querySelector(\"#warnings tr[data-key='%s']\") === null" % routing, what="the warning to leave the page")

            tab.click("#breakers tr[data-key='%s'] button" % failing)
            eventually(lambda: c.get("/monitoring/circuit-breakers").json()[failing]["state"] == "CLOSED", what="the breaker reset")
            tab.wait("document.getElementById('notice').innerText.includes('reset')", what="the reset notice")

            tab.click("#dead-letters tr[data-key='fragile/dl-replay'] button")  # Replay
            eventually(lambda: [d["messageId"] for d in c.get("/api/dead-letters").json()["deadLetters"]] == ["dl/delete me"], what="the replay")
            target.wait_for(4, "/flaky/3/replayed")  # delivered again, and this time it succeeds

            tab.click("#dead-letters tr[data-key='fragile/dl/delete me'] button:nth-of-type(2)")  # Delete, confirmed
            eventually(lambda: c.get("/api/dead-letters").json()["total"] == 0, what="the deletion")
            assert browser.dialogs == ["Delete dead letter dl/delete me for good?"]
            tab.wait("document.querySelector('#dead-letters tbody tr.empty') !== null", what="no dead letters shown")
            hold.released.set()
    finally:
        hold.released.set()


def test_dashboard_with_basic_auth_and_an_unreachable_api(tmp_path, browser):
    edge = EdgeRunner(tmp_path, auth_mode="BASIC", basic_username="admin", basic_password="s3cret").start()
    try:
        browser.tab().goto(edge.url("/dashboard"), refused=True)

        tab = browser.tab()
        tab.goto(edge.url("/dashboard?refresh=1").replace("http://", "http://admin:s3cret@"))
        tab.wait("document.body.dataset.state === 'ok'", what="the page to read the API with the browser's credentials")
        with edge.client(auth=("admin", "s3cret")) as c:
            page, api = check_page_matches_api(tab, c)
            assert list(api["pools"]) == ["DEFAULT"] and page["version"] == c.get("/monitoring").json()["version"]

        port = edge.port
        edge.stop()
        tab.wait("document.body.dataset.state === 'unreachable'", what="the page to notice the API is gone")
        tab.wait("document.getElementById('banner').innerText.includes('2 attempts')", what="the page to keep trying")
        page = tab.shown()
        assert page["banner"].startswith("Cannot reach the edge API at http://127.0.0.1:%d/ since " % port)
        assert "retrying every 1 s" in page["banner"] and "The figures below are from" in page["banner"]
        assert page["tables"]["pools"][0]["Pool"] == "DEFAULT"  # the last figures stay, marked stale
    finally:
        edge.stop()


def test_dashboard_with_a_token_in_the_address_fragment(tmp_path, browser):
    with EdgeRunner(tmp_path, auth_mode="TOKEN", api_token="tok-123") as edge:
        with edge.client() as c:  # the page holds no data: served without the token
            assert c.get("/dashboard").status_code == 200
            assert c.get("/monitoring/pools").status_code == 401  # the data is not
        tab = browser.tab()
        tab.goto(edge.url("/dashboard"))
        tab.wait("document.body.dataset.state === 'unauthorized'", what="the 401 notice")
        assert "#token=<FC_API_TOKEN>" in tab.shown()["banner"]

        tab.goto(edge.url("/monitoring/dashboard#token=tok-123"))
        tab.wait("document.body.dataset.state === 'ok'", what="the page to use the token")
        assert tab.eval("location.href") == edge.url("/monitoring/dashboard")  # not left in the address bar
        with edge.client(headers={"Authorization": "Bearer tok-123"}) as c:
            check_page_matches_api(tab, c)


def test_delivery_history_has_one_point_per_interval_for_the_window():
    history = DeliveryHistory(interval=5.0, keep=20.0, clock=lambda: 0.0)
    for now, succeeded, failed in [(0, 0, 0), (5, 10, 1), (10, 10, 1), (15, 25, 3), (20, 30, 3), (25, 31, 3)]:
        history.sample((succeeded, failed), now)
    assert [s[0] for s in history.samples] == [5, 10, 15, 20, 25]  # kept for 20 s
    # a tail shorter than a second is left to the next point
    assert history.points((32, 3), now=25.5) == [[10000, 5.0, 0, 0], [15000, 5.0, 15, 2], [20000, 5.0, 5, 0], [25000, 5.0, 1, 0]]
    assert history.points((33, 4), now=27.0)[-1] == [27000, 2.0, 2, 1]
    assert DeliveryHistory().points((0, 0), now=1.0) == []
