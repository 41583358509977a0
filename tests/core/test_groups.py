"""Message-group state of a pool (core/groups.py, router spec §3.3-§3.5)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from flowcatalyst.core.groups import MessageGroups


class Item:
    __slots__ = ("name", "batch_id")

    def __init__(self, name, batch_id="b1"):
        self.name = name
        self.batch_id = batch_id

    def __repr__(self):
        return "<Item %s %s>" % (self.name, self.batch_id)


def drain(groups, key):
    """Pop until the group is done: [(name, held)]."""
    out = []
    while True:
        item, held = groups.pop(key)
        if item is None:
            assert held is False
            return out
        out.append((item.name, held))


def push(groups, key, name, batch="b1", high=False):
    return groups.push(key, Item(name, batch), batch, high)


def test_push_answers_true_only_when_a_drain_must_start():
    g = MessageGroups()
    assert push(g, "g", "a") is True
    assert push(g, "g", "b") is False
    assert push(g, "h", "x") is True  # another group: its own drain
    assert push(g, "g", "c", high=True) is False
    assert len(g) == 2 and "g" in g and "h" in g
    assert g.queued("g") == 3 and g.queued("h") == 1 and g.queued("nope") == 0


def test_pop_in_arrival_order_and_the_group_is_forgotten_when_empty():
    g = MessageGroups()
    for name in ("a", "b", "c"):
        push(g, "g", name)
    assert g.pop("g")[0].name == "a"
    assert push(g, "g", "d") is False  # the drain is still running
    assert drain(g, "g") == [("b", False), ("c", False), ("d", False)]
    assert "g" not in g and len(g) == 0 and g.queued("g") == 0
    assert push(g, "g", "e") is True  # the old drain ended: a new one must start


def test_group_stays_while_its_drain_has_not_seen_it_empty():
    # Popping the last item does not end the group: the drain's next pop does. A push in
    # between joins the running drain instead of starting a second one.
    g = MessageGroups()
    push(g, "g", "a")
    assert g.pop("g")[0].name == "a"
    assert "g" in g and g.queued("g") == 0
    assert push(g, "g", "b") is False
    assert drain(g, "g") == [("b", False)]
    assert "g" not in g


def test_pop_of_an_unknown_group():
    g = MessageGroups()
    assert g.pop("nope") == (None, False)


def test_high_priority_lane_goes_first_then_arrival_order():
    g = MessageGroups()
    push(g, "g", "r1")
    push(g, "g", "r2")
    push(g, "g", "h1", high=True)
    push(g, "g", "r3")
    push(g, "g", "h2", high=True)
    assert [n for n, _ in drain(g, "g")] == ["h1", "h2", "r1", "r2", "r3"]


def test_high_priority_pushed_during_a_drain_overtakes_queued_regular_ones():
    g = MessageGroups()
    push(g, "g", "r1")
    push(g, "g", "r2")
    assert g.pop("g")[0].name == "r1"
    push(g, "g", "h1", high=True)
    assert [n for n, _ in drain(g, "g")] == ["h1", "r2"]


def test_groups_are_independent():
    g = MessageGroups()
    push(g, "g", "a1")
    push(g, "h", "b1")
    push(g, "g", "a2")
    assert drain(g, "h") == [("b1", False)]
    assert "g" in g and g.queued("g") == 2
    assert drain(g, "g") == [("a1", False), ("a2", False)]


def test_hold_sets_aside_the_rest_of_the_batch_in_that_group():
    g = MessageGroups()
    for name in ("a1", "a2", "a3"):
        push(g, "g", name, batch="b1")
    push(g, "g", "c1", batch="b2")  # a later poll batch
    push(g, "h", "x1", batch="b1")  # same batch, another group
    push(g, "h", "x2", batch="b1")
    item, held = g.pop("g")
    assert (item.name, held) == ("a1", False)
    g.hold("g", "b1")  # a1 failed
    assert drain(g, "g") == [("a2", True), ("a3", True), ("c1", False)]
    assert drain(g, "h") == [("x1", False), ("x2", False)]


def test_hold_ends_when_the_last_queued_message_of_the_batch_has_been_popped():
    g = MessageGroups()
    push(g, "g", "a1", batch="b1")
    push(g, "g", "a2", batch="b1")
    push(g, "g", "c1", batch="b2")
    g.pop("g")
    g.hold("g", "b1")
    assert g.pop("g")[0].name == "a2"
    # b1 has nothing queued any more: the mark is gone, a late b1 message is not held.
    push(g, "g", "a3", batch="b1")
    assert drain(g, "g") == [("c1", False), ("a3", False)]


def test_hold_with_nothing_left_of_the_batch_is_a_no_op():
    g = MessageGroups()
    push(g, "g", "a1", batch="b1")
    push(g, "g", "c1", batch="b2")
    g.pop("g")
    g.hold("g", "b1")  # a1 was the last of b1 in this group
    push(g, "g", "a2", batch="b1")
    assert drain(g, "g") == [("c1", False), ("a2", False)]


def test_hold_of_an_unknown_group_is_a_no_op():
    g = MessageGroups()
    g.hold("nope", "b1")
    assert len(g) == 0 and "nope" not in g


def test_hold_covers_both_lanes_and_interleaved_batches():
    g = MessageGroups()
    push(g, "g", "a1", batch="b1")
    push(g, "g", "c1", batch="b2")
    push(g, "g", "a2", batch="b1")
    push(g, "g", "h1", batch="b1", high=True)
    push(g, "g", "h2", batch="b2", high=True)
    item, held = g.pop("g")
    assert (item.name, held) == ("h1", False)
    g.hold("g", "b1")
    assert drain(g, "g") == [("h2", False), ("a1", True), ("c1", False), ("a2", True)]


def test_two_batches_held_at_once():
    g = MessageGroups()
    push(g, "g", "a1", batch="b1")
    push(g, "g", "a2", batch="b1")
    push(g, "g", "c1", batch="b2")
    push(g, "g", "c2", batch="b2")
    g.hold("g", "b1")
    g.hold("g", "b2")
    assert drain(g, "g") == [("a1", True), ("a2", True), ("c1", True), ("c2", True)]


def test_hold_ends_with_the_group():
    g = MessageGroups()
    push(g, "g", "a1", batch="b1")
    push(g, "g", "a2", batch="b1")
    g.hold("g", "b1")
    assert [i.name for i in g.take_all("g")] == ["a1", "a2"]
    assert push(g, "g", "a3", batch="b1") is True
    assert drain(g, "g") == [("a3", False)]


def test_take_all_returns_high_then_regular_and_forgets_the_group():
    g = MessageGroups()
    push(g, "g", "r1")
    push(g, "g", "h1", high=True)
    push(g, "g", "r2")
    push(g, "h", "x")
    g.pop("g")  # h1 is being delivered
    push(g, "g", "h2", high=True)
    assert [i.name for i in g.take_all("g")] == ["h2", "r1", "r2"]
    assert "g" not in g and len(g) == 1
    assert g.pop("g") == (None, False)
    assert g.take_all("g") == []
    assert g.take_all("nope") == []
    assert push(g, "g", "r3") is True


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["push", "pop", "hold"]),
            st.sampled_from(["g", "h"]),
            st.sampled_from(["b1", "b2", "b3"]),
            st.booleans(),
        ),
        max_size=40,
    )
)
def test_random_operations_match_a_simple_model(ops):
    """Against a model: order (high lane first, FIFO within a lane), the drain-start answer,
    and which popped items are held."""
    g = MessageGroups()
    lanes = {}  # key -> (high list, regular list)
    held = {}  # key -> set of held batches
    n = 0
    for op, key, batch, flag in ops:
        if op == "push":
            n += 1
            assert push(g, key, "i%d" % n, batch, high=flag) is (key not in lanes)
            lanes.setdefault(key, ([], []))[0 if flag else 1].append(Item("i%d" % n, batch))
        elif op == "pop":
            item, was_held = g.pop(key)
            if key not in lanes:
                assert item is None
                continue
            high, regular = lanes[key]
            if not high and not regular:
                assert item is None and key not in g
                del lanes[key]
                held.pop(key, None)
                continue
            want = (high or regular).pop(0)
            assert item.name == want.name
            marks = held.get(key, set())
            assert was_held is (want.batch_id in marks)
            if not any(i.batch_id == want.batch_id for i in high + regular):
                marks.discard(want.batch_id)
        else:
            g.hold(key, batch)
            if key in lanes and any(i.batch_id == batch for i in lanes[key][0] + lanes[key][1]):
                held.setdefault(key, set()).add(batch)
        assert len(g) == len(lanes)
        for k, (high, regular) in lanes.items():
            assert g.queued(k) == len(high) + len(regular)
