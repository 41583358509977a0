"""The queue counter history behind /monitoring/queue-stats?time_window=, with a fake clock."""

import pytest

from flowcatalyst.edge.queuestats import QueueHistory, parse_window


class Q:
    def __init__(self):
        self.counters = {"received": 0, "acked": 0, "nacked": 0}


def test_windows_are_deltas_against_the_newest_snapshot_old_enough():
    q = Q()
    h = QueueHistory(interval=60, keep=1800)
    for minute in range(0, 41):  # a snapshot a minute; 10 acks a minute
        h.snapshot_if_due({"q": q}, now=minute * 60.0)
        q.counters["acked"] += 10
    now = 40 * 60.0 + 30  # 410 acks so far
    assert h.counters("q", q, None, now)["acked"] == 410
    # newest snapshot at or before now-300 is minute 35 (350 acks at that point)
    assert h.counters("q", q, 300, now)["acked"] == 410 - 350
    # 30 minutes: minute 10 (100 acks); the history reaches back that far
    assert h.counters("q", q, 1800, now)["acked"] == 410 - 100


def test_short_history_falls_back_to_the_oldest_snapshot():
    q = Q()
    h = QueueHistory(interval=60)
    h.snapshot({"q": q}, now=1000.0)
    q.counters["received"] = 7
    assert h.counters("q", q, 1800, now=1100.0)["received"] == 7


def test_old_snapshots_are_dropped_and_vanished_queues_forgotten():
    q = Q()
    h = QueueHistory(interval=60, keep=600)
    for minute in range(60):
        h.snapshot({"q": q}, now=minute * 60.0)
    assert len(h._lines["q"]) <= 12
    h.snapshot({}, now=3600.0)
    assert h._lines == {}


def test_a_restarted_queue_counts_from_its_restart():
    old, new = Q(), Q()
    old.counters["acked"] = 100
    h = QueueHistory(interval=60)
    h.snapshot({"q": old}, now=0.0)
    new.counters["acked"] = 5
    h.snapshot({"q": new}, now=60.0)
    new.counters["acked"] = 8
    assert h.counters("q", new, 300, now=120.0)["acked"] == 3  # the old object's snapshot is ignored


@pytest.mark.parametrize("text, seconds", [(None, None), ("", None), ("all", None), ("5min", 300), ("5m", 300), ("30MIN", 1800), ("30m", 1800)])
def test_parse_window(text, seconds):
    assert parse_window(text) == seconds


def test_parse_window_refuses_others():
    with pytest.raises(ValueError, match="time_window"):
        parse_window("1h")
