"""Dead letters through the API, produced for real: a target that answers `ack: false` and
queues that allow one receive, so every failed delivery is dead-lettered at once."""

import pytest

from tests.support.edgeapp import EdgeRunner, eventually, pointer

CONFIG = {
    "processingPools": [{"code": "P", "concurrency": 4}],
    "queues": [{"queueName": "main", "maxReceiveCount": 1}, {"queueName": "other", "maxReceiveCount": 1, "dedupWindowSeconds": 0}],
}


class Switch:
    """A target path that refuses (ack: false) until told to accept."""

    def __init__(self):
        self.accept = False

    def __call__(self, rec):
        if self.accept:
            return 200, {}, {"ack": True}
        return 200, {}, {"ack": False, "delaySeconds": 0}


@pytest.fixture
def switch(target):
    s = Switch()
    target.on("/switch", s)
    return s


@pytest.fixture
def edge(tmp_path, switch):
    with EdgeRunner(tmp_path, config=CONFIG) as runner:
        yield runner


def dead_letter(edge, c, target, ids, queue="main"):
    r = c.post("/api/messages", json={"queue": queue, "messages": [pointer(target.url("/switch"), i, poolCode="P") for i in ids]})
    assert r.json()["accepted"] == len(ids)
    eventually(lambda: len(c_list(c, queue)) == len(ids), what="%d dead letters on %s" % (len(ids), queue))


def c_list(c, queue):
    return c.get("/api/dead-letters", params={"queue": queue}).json()["deadLetters"]


def test_list_and_filter_by_queue(edge, target):
    with edge.client() as c:
        dead_letter(edge, c, target, ["a-1", "a-2"], "main")
        dead_letter(edge, c, target, ["b-1"], "other")
        body = c.get("/api/dead-letters").json()
        assert (body["total"], body["limit"], body["offset"]) == (3, 100, 0)
        assert sorted(d["messageId"] for d in body["deadLetters"]) == ["a-1", "a-2", "b-1"]
        item = [d for d in body["deadLetters"] if d["messageId"] == "b-1"][0]
        assert item["queue"] == "other" and item["receiveCount"] == 1
        assert "ack" in item["reason"].lower() or "failed" in item["reason"]
        assert item["message"]["mediationTarget"] == target.url("/switch")
        assert [d["messageId"] for d in c_list(c, "other")] == ["b-1"]
        page = c.get("/api/dead-letters", params={"queue": "main", "limit": 1, "offset": 1}).json()
        assert len(page["deadLetters"]) == 1 and page["total"] == 2
        assert c.get("/api/dead-letters", params={"queue": "nope"}).status_code == 404
        assert c.get("/api/dead-letters", params={"limit": 0}).status_code == 400
        assert c.get("/monitoring/queues").json()[0]["dead_letters"] == 2


def test_replay_one_and_it_is_delivered(edge, target, switch):
    with edge.client() as c:
        dead_letter(edge, c, target, ["r-1", "r-2"])
        switch.accept = True
        r = c.post("/api/dead-letters/r-1/replay")
        assert (r.status_code, r.json()) == (200, {"replayed": 1, "messageId": "r-1"})
        edge.wait_until(lambda: edge.router.metrics.processed.get(("P", "true", "SUCCESS")) == 1, what="the replayed delivery")
        assert [d["messageId"] for d in c_list(c, "main")] == ["r-2"]
        r = c.post("/api/dead-letters/r-1/replay")
        assert (r.status_code, r.json()["error"]) == (404, "not_found")


def test_replay_all_of_a_queue_or_by_ids(edge, target, switch):
    with edge.client() as c:
        dead_letter(edge, c, target, ["x-1", "x-2"], "main")
        dead_letter(edge, c, target, ["y-1"], "other")
        switch.accept = True
        r = c.post("/api/dead-letters/replay", json={"queue": "main"})
        assert r.json() == {"replayed": 2, "queues": {"main": 2}}
        edge.wait_until(lambda: edge.router.metrics.processed.get(("P", "true", "SUCCESS")) == 2, what="two replays")
        r = c.post("/api/dead-letters/replay", json={"messageIds": ["y-1", "zzz"]})
        assert r.json() == {"replayed": 1, "queues": {"main": 0, "other": 1}}
        edge.wait_until(lambda: edge.router.metrics.processed.get(("P", "true", "SUCCESS")) == 3, what="the third replay")
        assert c.get("/api/dead-letters").json()["deadLetters"] == []
        assert c.post("/api/dead-letters/replay", json={"messageIds": "y-1"}).status_code == 400


def test_replay_keeps_a_dead_letter_whose_id_is_queued_again(edge, target):
    with edge.client() as c:
        dead_letter(edge, c, target, ["k-1"], "other")  # no deduplication window: k-1 may come again
        edge.call(edge.router.consumers["other"].consumer.stop())  # what is published now stays queued
        assert c.post("/api/messages", json={"queue": "other", "messages": [pointer(target.url("/switch"), "k-1", poolCode="P")]}).json()["accepted"] == 1
        r = c.post("/api/dead-letters/k-1/replay")
        assert (r.status_code, r.json()["error"]) == (409, "not_replayed")


def test_delete_one_and_all(edge, target):
    with edge.client() as c:
        dead_letter(edge, c, target, ["d-1", "d-2", "d-3"])
        dead_letter(edge, c, target, ["e-1"], "other")
        r = c.delete("/api/dead-letters/d-2")
        assert (r.status_code, r.json()) == (200, {"deleted": 1, "messageId": "d-2"})
        assert c.delete("/api/dead-letters/d-2").status_code == 404
        r = c.delete("/api/dead-letters", params={"queue": "main"})
        assert r.json() == {"deleted": 2, "queues": {"main": 2}}
        assert [d["messageId"] for d in c.get("/api/dead-letters").json()["deadLetters"]] == ["e-1"]
        assert c.delete("/api/dead-letters").json() == {"deleted": 1, "queues": {"main": 0, "other": 1}}
