"""In-pipeline tracking and deduplication (core/pipeline.py, router spec §3.2 phase 0-1, §3.6-§3.7)."""

from flowcatalyst.core.message import Message
from flowcatalyst.core.pipeline import NEW, REDELIVERY, REQUEUE, InFlight, Pipeline, pipeline_key
from flowcatalyst.core.ports import QueuedMessage


def copy(msg_id, broker_id, handle, queue="q", group="g"):
    message = Message(msg_id, "http://target.example/hook", message_group_id=group)
    return QueuedMessage(message, handle, broker_id, queue)


def route(p, queued, now, pool="P", batch="0"):
    """What route_batch does with one copy: check it, and track it when it is new."""
    verdict = p.check(queued, now)
    if verdict == NEW:
        p.track(queued, pool, batch, now, 1_700_000_000.0 + now)
    return verdict


def test_pipeline_key_is_the_broker_id_or_a_fallback():
    assert pipeline_key(copy("m1", "b1", "h1")) == "b1"
    assert pipeline_key(copy("m1", None, "h1", queue="orders")) == "fallback:orders:m1"
    assert pipeline_key(copy("m1", "", "h1", queue="orders")) == "fallback:orders:m1"


def test_new_message_is_tracked_with_everything_the_router_needs():
    p = Pipeline()
    q = copy("m1", "b1", "h1", queue="orders", group="cust-7")
    assert p.check(q, 10.0) == NEW
    assert len(p) == 0  # check alone tracks nothing
    key = p.track(q, "POOL-A", "42", 10.0, 1_700_000_010.0)
    assert key == "b1" and len(p) == 1
    e = p.entries[key]
    assert isinstance(e, InFlight)
    assert (e.key, e.message_id, e.broker_message_id, e.receipt_handle) == ("b1", "m1", "b1", "h1")
    assert (e.queue_identifier, e.pool_code, e.group, e.batch_id) == (
        "orders",
        "POOL-A",
        "cust-7",
        "42",
    )
    assert (e.started_at, e.last_seen, e.wall_started_at) == (10.0, 10.0, 1_700_000_010.0)
    assert p.by_message_id == {"m1": "b1"}
    assert p.receipt_handle("b1") == "h1"
    assert p.receipt_handle("nope") is None


def test_redelivery_swaps_in_the_newest_receipt_handle_and_refreshes_last_seen():
    p = Pipeline()
    assert route(p, copy("m1", "b1", "h1"), 0.0) == NEW
    assert p.check(copy("m1", "b1", "h2"), 50.0) == REDELIVERY
    assert p.receipt_handle("b1") == "h2"
    e = p.entries["b1"]
    assert e.last_seen == 50.0 and e.started_at == 0.0
    assert len(p) == 1  # the copy is dropped, not tracked
    assert p.check(copy("m1", "b1", "h3"), 60.0) == REDELIVERY
    assert p.receipt_handle("b1") == "h3"


def test_requeue_under_another_broker_id_leaves_the_original_alone():
    p = Pipeline()
    route(p, copy("m1", "b1", "h1"), 0.0)
    assert p.check(copy("m1", "b2", "h9"), 5.0) == REQUEUE
    e = p.entries["b1"]
    assert e.receipt_handle == "h1" and e.last_seen == 0.0
    assert list(p.entries) == ["b1"] and p.by_message_id == {"m1": "b1"}


def test_copies_without_broker_id_are_matched_by_message_id_within_their_queue():
    p = Pipeline()
    assert route(p, copy("m1", None, "h1", queue="q1"), 0.0) == NEW
    key = "fallback:q1:m1"
    assert list(p.entries) == [key]
    assert p.check(copy("m1", None, "h2", queue="q1"), 3.0) == REDELIVERY
    assert p.receipt_handle(key) == "h2" and p.entries[key].last_seen == 3.0


def test_copy_without_broker_id_from_another_queue_is_a_requeue_not_a_handle_swap():
    # The original's final ack goes to q1's consumer: it must keep a q1 receipt handle.
    p = Pipeline()
    route(p, copy("m1", None, "q1-handle", queue="q1"), 0.0)
    assert p.check(copy("m1", None, "q2-handle", queue="q2"), 1.0) == REQUEUE
    assert p.receipt_handle("fallback:q1:m1") == "q1-handle"


def test_copy_with_broker_id_of_a_message_tracked_without_one_is_a_requeue():
    p = Pipeline()
    route(p, copy("m1", None, "h1", queue="q1"), 0.0)
    assert p.check(copy("m1", "b7", "h2", queue="q1"), 1.0) == REQUEUE
    assert p.receipt_handle("fallback:q1:m1") == "h1"


def test_same_id_twice_in_one_batch():
    # route_batch tracks each new copy before checking the next one (spec §13 item 27).
    p = Pipeline()
    batch = [copy("m1", "b1", "h1"), copy("m1", "b1", "h2"), copy("m1", "b2", "h3")]
    assert [route(p, q, 0.0, batch="7") for q in batch] == [NEW, REDELIVERY, REQUEUE]
    assert len(p) == 1 and p.receipt_handle("b1") == "h2"


def test_release_forgets_both_indexes_and_the_id_becomes_new_again():
    p = Pipeline()
    route(p, copy("m1", "b1", "h1"), 0.0)
    e = p.release("b1")
    assert e is not None and e.message_id == "m1" and e.receipt_handle == "h1"
    assert len(p) == 0 and p.by_message_id == {}
    assert p.release("b1") is None
    assert p.check(copy("m1", "b1", "h2"), 1.0) == NEW
    assert p.check(copy("m1", "b2", "h3"), 1.0) == NEW


def test_release_of_an_older_key_keeps_the_newer_index_entry():
    p = Pipeline()
    p.track(copy("m1", "b1", "h1"), "P", "0", 0.0, 0.0)
    p.track(copy("m1", "b2", "h2"), "P", "1", 1.0, 1.0)
    assert p.by_message_id == {"m1": "b2"}
    p.release("b1")
    assert p.by_message_id == {"m1": "b2"}
    assert p.check(copy("m1", "b2", "h3"), 2.0) == REDELIVERY
    p.release("b2")
    assert p.by_message_id == {} and len(p) == 0


def test_stale_index_entry_without_tracking_counts_as_new():
    p = Pipeline()
    p.by_message_id["m1"] = "fallback:q:m1"  # index left behind without its entry
    assert p.check(copy("m1", None, "h1"), 0.0) == NEW


def test_reap_by_last_seen():
    p = Pipeline()
    route(p, copy("m1", "b1", "h1"), 0.0)
    route(p, copy("m2", "b2", "h2"), 0.0)
    route(p, copy("m3", "b3", "h3"), 30.0)
    p.check(copy("m1", "b1", "h1b"), 50.0)  # a redelivery refreshes last_seen
    assert p.reap(59.9, 60) == []
    reaped = p.reap(60.0, 60)  # exactly max_age: reaped
    assert [e.key for e in reaped] == ["b2"]
    assert set(p.entries) == {"b1", "b3"} and "m2" not in p.by_message_id
    assert p.check(copy("m2", "b2", "h2b"), 61.0) == NEW  # it will be worked on again
    assert sorted(e.key for e in p.reap(110.0, 60)) == ["b1", "b3"]
    assert len(p) == 0 and p.by_message_id == {}


def test_pending_deletes():
    p = Pipeline()
    assert p.take_pending_delete("b1") is False
    p.remember_failed_ack("b1", 10.0)
    p.remember_failed_ack("b2", 40.0)
    assert p.take_pending_delete("b1") is True
    assert p.take_pending_delete("b1") is False  # taken once
    p.remember_failed_ack("b1", 10.0)
    assert p.expire_pending_deletes(69.9, 60) == 0
    assert p.expire_pending_deletes(70.0, 60) == 1  # b1 is 60 s old
    assert p.take_pending_delete("b1") is False
    assert p.take_pending_delete("b2") is True
    assert p.expire_pending_deletes(1000.0, 60) == 0


def test_same_broker_id_from_another_queue_is_a_requeue_not_a_handle_swap():
    # Queues whose broker id is the message id (the SQLite layout) can share broker ids.
    p = Pipeline()
    route(p, copy("m1", "m1", "q1-handle", queue="q1"), 0.0)
    assert p.check(copy("m1", "m1", "q2-handle", queue="q2"), 1.0) == REQUEUE
    assert p.receipt_handle("m1") == "q1-handle"
    assert p.check(copy("m1", "m1", "q1-handle-2", queue="q1"), 2.0) == REDELIVERY
    assert p.receipt_handle("m1") == "q1-handle-2"
