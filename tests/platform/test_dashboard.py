"""The dashboard on the platform server (edge/dashboard.html), on SQLite and PostgreSQL, with JWT
auth: the page is served with the platform's views, every request those views make answers on
a platform with data in it (the requests are read out of the page itself, so the page and the
API cannot drift apart), and in a real headless Chromium the views show the platform's events,
subscriptions, jobs and attempts, and Replay puts a FAILED job back to PENDING.

The server runs without the scheduler, so a replayed job stays PENDING (nothing delivers it).
The browser tests use tests/edge/test_dashboard.py's Chromium driver; like those, they skip
without Chromium except under CI=true, where they fail.
"""

import json
import os
import re

import httpx
import pytest

from flowcatalyst.server.platform import clock, ids, jobs
from tests.edge.test_dashboard import CHROMIUM, Browser
from tests.platform.test_api_pools import SECRET, token
from tests.support.edgeapp import EdgeRunner, eventually
from tests.support.platform import PlatformRunner
from tests.support.postgres import FreshDatabase

EVENT_TYPE = "shop:orders:order:created"
OTHER_TYPE = "shop:orders:order:shipped"
PLATFORM_MARKERS = (
    'id="platform"',
    'id="events"',
    'id="subscriptions"',
    'id="jobs"',
    'id="attempts"',
)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def platform(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    db = FreshDatabase() if request.param == "postgres" else None
    url = db.url if db else "sqlite://%s" % (tmp / "platform.db")
    server = PlatformRunner(tmp, url, auth="JWT", jwt_secret=SECRET, scheduler_enabled=False)
    server.start()
    server.token = token()
    server.http = httpx.Client(
        base_url=server.url(""), timeout=10, headers={"Authorization": "Bearer " + server.token}
    )
    yield server
    server.http.close()
    server.stop()
    if db is not None:
        db.drop()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is required under CI=true for the dashboard test")
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    b = Browser(CHROMIUM)
    yield b
    b.close()


# -- data ----------------------------------------------------------------------------------------


def failed_job(platform, code="shop:orders:order:created", attempts=1):
    """A FAILED dispatch job written straight into the store, with its failed attempts; its id
    once the job list (the read model) shows it."""
    job = jobs.new_job(
        code,
        "http://127.0.0.1:9/hook",
        status="FAILED",
        attempt_count=attempts,
        max_retries=attempts,
    )
    now = clock.now()
    columns = ("id", "dispatch_job_id", "attempt_number", "status", "response_code", "response_body",
               "error_message", "error_type", "duration_millis", "attempted_at", "completed_at", "created_at")  # fmt: skip
    rows = [
        (
            ids.tsid(),
            job["id"],
            n,
            "FAILED",
            500,
            "boom",
            "HTTP 500",
            "HTTP_ERROR",
            12,
            now,
            now,
            now,
        )
        for n in range(1, attempts + 1)
    ]

    async def unit(tx):
        await jobs.insert_jobs(tx, [job])
        await tx.execute(
            "UPDATE msg_dispatch_jobs SET last_error = ? WHERE id = ?", ("HTTP 500", job["id"])
        )
        await tx.insert("msg_dispatch_job_attempts", columns, rows)

    platform.write(unit)
    eventually(
        lambda: listed_status(platform, job["id"]) == "FAILED", what="the job in the job list"
    )
    return job["id"]


def listed_status(platform, job_id):
    """The job's status in GET /api/dispatch-jobs (the read model the page shows)."""
    reply = platform.http.get("/api/dispatch-jobs", params={"size": 1000})
    assert reply.status_code == 200, reply.text
    return {j["id"]: j["status"] for j in reply.json()}.get(job_id)


def stored_status(platform, job_id):
    [row] = platform.query(
        "SELECT status, attempt_count FROM msg_dispatch_jobs WHERE id = ?", (job_id,)
    )
    return row["status"], row["attempt_count"]


def subscription(platform):
    """A subscription to EVENT_TYPE (fan-out makes a job of each such event)."""
    subscription.count += 1
    body = {
        "code": "dash-%d" % subscription.count,
        "name": "Dashboard orders %d" % subscription.count,
        "endpoint": "http://127.0.0.1:9/orders",
        "eventTypes": [{"eventTypeCode": EVENT_TYPE}],
    }
    reply = platform.http.post("/api/subscriptions", json=body)
    assert reply.status_code == 201, reply.text
    return reply.json()


subscription.count = 0


def event(platform, event_type=EVENT_TYPE, **data):
    """Publish an event; its id once the event list and its jobs show it."""
    reply = platform.http.post(
        "/api/events", json={"type": event_type, "source": "dash-test", "data": data}
    )
    assert reply.status_code == 201, reply.text
    event_id = reply.json()["event"]["id"]
    eventually(
        lambda: (
            event_id
            in [e["id"] for e in platform.http.get("/api/events", params={"size": 1000}).json()]
        ),
        what="the event in the event list",
    )
    return event_id


# -- the page and the API agree ------------------------------------------------------------------


def page(platform):
    reply = httpx.get(platform.url("/dashboard"))  # the page itself is public: it holds no data
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    return reply.text


def page_constant(html, name):
    """A JSON constant of the page's script (`const NAME = {...};`)."""
    script = re.search(r"<script>(.*?)</script>", html, re.S).group(1)
    match = re.search(r"const %s = (\{.*?\});" % name, script, re.S)
    assert match, "the page has no const %s" % name
    return json.loads(match.group(1))


def test_the_page_is_served_with_the_platform_views(platform):
    html = page(platform)
    for marker in PLATFORM_MARKERS:
        assert marker in html, marker
    assert '<section id="platform" hidden>' in html  # until the page finds the platform API
    assert page_constant(html, "PLATFORM_API")["probe"] == "GET api/events?size=1"


def test_every_request_of_the_page_answers_on_a_platform(platform):
    html = page(platform)
    requests = page_constant(html, "PLATFORM_API")
    filters = page_constant(html, "FILTERS")
    assert sorted(requests) == sorted(
        [
            "probe",
            "events",
            "event",
            "eventJobs",
            "subscriptions",
            "jobs",
            "attempts",
            "replay",
            "replayFailed",
        ]
    )
    sub = subscription(platform)
    event_id = event(platform, order=1)
    eventually(
        lambda: platform.http.get("/api/dispatch-jobs", params={"eventId": event_id}).json(),
        what="fan-out",
    )
    job_id = failed_job(platform, attempts=2)
    other_failed = failed_job(platform)
    values = {"eventId": event_id, "jobId": job_id}

    def call(name, query=""):
        method, path = requests[name].split(" ")
        path = "/" + re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path) + query
        body = page_constant(html, "REPLAY_FAILED") if name == "replayFailed" else None
        reply = platform.http.request(method, path, json=body)
        assert 200 <= reply.status_code < 300, (name, path, reply.status_code, reply.text)
        return reply.json()

    gets = [name for name in requests if requests[name].startswith("GET ")]
    answers = {name: call(name) for name in gets}
    for name, answer in answers.items():
        assert answer, "%s answered no data" % name  # an empty list or object proves nothing
    assert answers["event"]["id"] == event_id and answers["event"]["data"] == {"order": 1}
    assert [j["subscriptionId"] for j in answers["eventJobs"]] == [sub["id"]]
    assert sub["code"] in [s["code"] for s in answers["subscriptions"]["subscriptions"]]
    assert [a["attemptNumber"] for a in answers["attempts"]] == [1, 2]
    assert {"FAILED"} <= {j["status"] for j in answers["jobs"]}

    # the filters, in the query parameters the page puts them in
    param, _ = filters["events"]
    assert {e["type"] for e in call("events", "&%s=%s" % (param, EVENT_TYPE))} == {EVENT_TYPE}
    param, _ = filters["jobs"]
    assert {j["status"] for j in call("jobs", "&%s=FAILED" % param)} == {"FAILED"}

    assert call("replay") == {"count": 1}
    assert stored_status(platform, job_id) == ("PENDING", 0)
    assert call("replayFailed")["count"] >= 1
    assert stored_status(platform, other_failed) == ("PENDING", 0)


# -- in a browser --------------------------------------------------------------------------------


def open_dashboard(platform, browser):
    """A tab on the platform's dashboard with the token in the address fragment; refreshed only
    when the test (or a button) says so."""
    tab = browser.tab()
    tab.goto(platform.url("/dashboard?refresh=300#token=%s" % platform.token))
    tab.wait("document.body.dataset.state === 'ok'", what="the first refresh")
    tab.wait("!document.getElementById('platform').hidden", what="the platform views")
    return tab


def row(job_or_event_id, table):
    return "#%s tr[data-key='%s']" % (table, job_or_event_id)


def text(tab, selector):
    return tab.eval("(document.querySelector(%s) || {}).innerText || ''" % json.dumps(selector))


def test_the_views_show_the_platform_and_replay_works(platform, browser):
    sub = subscription(platform)
    shown_event = event(platform, order=7)
    other_event = event(platform, OTHER_TYPE)
    replayed, raced, bulk = (failed_job(platform) for _ in range(3))
    tab = open_dashboard(platform, browser)
    assert tab.eval("document.getElementById('product').innerText") == "FlowCatalyst platform"

    # subscriptions, events and their filter
    assert "Dashboard orders" in text(tab, row(sub["id"], "subscriptions"))
    assert EVENT_TYPE in text(tab, row(sub["id"], "subscriptions"))
    assert text(tab, row(other_event, "events"))
    tab.eval(
        "const f = document.getElementById('event-type'); f.value = %s; f.dispatchEvent(new Event('change'))"
        % json.dumps(EVENT_TYPE)
    )
    tab.wait(
        "document.querySelector(%s) === null" % json.dumps(row(other_event, "events")),
        what="the type filter",
    )
    assert text(tab, row(shown_event, "events"))

    # an event's details: its data and its job (made by fan-out for the subscription)
    eventually(
        lambda: platform.http.get("/api/dispatch-jobs", params={"eventId": shown_event}).json(),
        what="fan-out",
    )
    tab.click(row(shown_event, "events"))
    tab.wait(
        "document.getElementById('event-detail-id').innerText === %s" % json.dumps(shown_event),
        what="the event's details",
    )
    assert json.loads(text(tab, "#event-detail-body"))["data"] == {"order": 7}
    tab.wait(
        "document.querySelector('#event-jobs tbody tr:not(.empty)') !== null",
        what="the event's job",
    )
    assert "http://127.0.0.1:9/orders" in text(tab, "#event-jobs tbody tr")

    # a job's attempts
    tab.click(row(replayed, "jobs"))
    tab.wait(
        "document.getElementById('job-detail-id').innerText === %s" % json.dumps(replayed),
        what="the job's attempts",
    )
    tab.wait(
        "document.querySelector('#attempts tbody tr:not(.empty)') !== null", what="an attempt row"
    )
    assert "HTTP_ERROR: HTTP 500" in text(tab, "#attempts tbody tr")

    # Replay: the job goes back to PENDING with its attempts reset
    tab.click(row(replayed, "jobs") + " button")
    eventually(lambda: stored_status(platform, replayed) == ("PENDING", 0), what="the replay")
    tab.wait(
        "document.getElementById('notice').innerText.includes('put back to PENDING')",
        what="the replay notice",
    )
    eventually(
        lambda: listed_status(platform, replayed) == "PENDING", what="the replayed job in the list"
    )
    tab.refresh()
    assert "PENDING" in text(tab, row(replayed, "jobs"))
    assert (
        tab.eval("document.querySelector(%s)" % json.dumps(row(replayed, "jobs") + " button"))
        is None
    )

    # the API's refusal is shown: the job was replayed elsewhere after the page showed it FAILED
    assert platform.http.post("/api/dispatch-jobs/%s/requeue" % raced).json() == {"count": 1}
    tab.click(row(raced, "jobs") + " button")
    tab.wait("document.getElementById('notice').classList.contains('failed')", what="the refusal")
    assert "answered 409 INVALID_JOB_STATUS: a PENDING dispatch job cannot be requeued" in text(
        tab, "#notice"
    )

    # Replay all failed, after the confirmation
    tab.click("#jobs-actions button")
    eventually(lambda: stored_status(platform, bulk) == ("PENDING", 0), what="replay all failed")
    tab.wait(
        "/\\d+ failed dispatch jobs? put back to PENDING/.test(document.getElementById('notice').innerText)",
        what="the bulk notice",
    )
    assert "Put every FAILED dispatch job back to PENDING?" in browser.dialogs
    assert tab.eval("document.body.dataset.state") == "ok"


def test_an_edge_shows_no_platform_views(tmp_path, browser):
    with EdgeRunner(tmp_path) as edge:
        tab = browser.tab()
        tab.goto(edge.url("/dashboard?refresh=1"))
        tab.wait("Number(document.body.dataset.refreshes) >= 2", what="two refreshes")
        assert tab.eval("document.body.dataset.state") == "ok"  # the probe's 404 is no error
        assert tab.eval("document.getElementById('platform').hidden") is True
        assert tab.eval("document.getElementById('product').innerText") == "FlowCatalyst edge"
