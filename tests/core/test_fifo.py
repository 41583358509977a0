"""The MicroPython-friendly FIFO list (core/fifo.py)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowcatalyst.core.fifo import Fifo


class Box:
    """Equal by value, distinct by identity: remove() must go by identity."""

    __slots__ = ("v",)

    def __init__(self, v):
        self.v = v

    def __eq__(self, other):
        return isinstance(other, Box) and other.v == self.v

    __hash__ = None

    def __repr__(self):
        return "Box(%r)" % self.v


def key(b):
    return b.v


def test_empty():
    f = Fifo()
    assert len(f) == 0 and not f and bool(f) is False
    assert f.peek() is None
    assert list(f) == []
    with pytest.raises(IndexError):
        f.popleft()
    assert f.remove(object()) is False


def test_append_popleft_peek_and_iterate_in_order():
    f = Fifo()
    for i in range(5):
        f.append(i)
    assert len(f) == 5 and f and f.peek() == 0
    assert list(f) == [0, 1, 2, 3, 4]
    assert f.popleft() == 0 and f.popleft() == 1
    assert f.peek() == 2 and len(f) == 3
    assert list(f) == [2, 3, 4]
    f.append(5)
    assert [f.popleft() for _ in range(4)] == [2, 3, 4, 5]
    assert not f and f.peek() is None
    with pytest.raises(IndexError):
        f.popleft()
    f.append("again")
    assert list(f) == ["again"]


def test_long_run_keeps_order_and_compacts():
    f = Fifo()
    out = []
    for i in range(5000):
        f.append(i)
        if i % 3:
            out.append(f.popleft())
    out.extend(f.popleft() for _ in range(len(f)))
    assert out == list(range(5000))
    # Popped slots are released: the backing list does not keep the whole history.
    for i in range(1000):
        f.append(i)
    for _ in range(900):
        f.popleft()
    assert list(f) == list(range(900, 1000))
    assert len(f._items) < 1000


def test_remove_by_identity_at_head_middle_and_tail():
    a, b, c, d = Box(1), Box(2), Box(3), Box(4)
    twin = Box(2)  # equal to b, but not b
    f = Fifo()
    for x in (a, b, c, d):
        f.append(x)
    assert f.remove(twin) is False and len(f) == 4
    assert f.remove(b) is True
    assert [x.v for x in f] == [1, 3, 4]
    assert f.remove(a) is True  # the head
    assert f.peek() is c and len(f) == 2
    assert f.remove(d) is True  # the tail
    assert list(f) == [c] and f.remove(d) is False
    assert f.remove(c) is True and not f


def test_remove_first_occurrence_only():
    x = Box(1)
    f = Fifo()
    f.append(x)
    f.append(Box(2))
    f.append(x)
    assert f.remove(x) is True
    assert [b.v for b in f] == [2, 1]
    assert f.peek().v == 2


def test_remove_after_popleft_ignores_popped_items():
    items = [Box(i) for i in range(5)]
    f = Fifo()
    for x in items:
        f.append(x)
    f.popleft()
    f.popleft()
    assert f.remove(items[0]) is False
    assert f.remove(items[3]) is True
    assert [x.v for x in f] == [2, 4]


def test_insert_ordered_positions():
    f = Fifo()
    f.insert_ordered(Box(5), key)  # into an empty list
    assert [x.v for x in f] == [5]
    for v in (7, 9):
        f.append(Box(v))
    f.insert_ordered(Box(1), key)  # front
    f.insert_ordered(Box(8), key)  # middle
    f.insert_ordered(Box(10), key)  # end
    assert [x.v for x in f] == [1, 5, 7, 8, 9, 10]
    assert f.peek().v == 1 and len(f) == 6


def test_insert_ordered_puts_equal_keys_after_existing_ones():
    f = Fifo()
    first, second = Box(3), Box(3)
    f.append(Box(1))
    f.append(first)
    f.append(Box(5))
    f.insert_ordered(second, key)
    got = list(f)
    assert [x.v for x in got] == [1, 3, 3, 5]
    assert got[1] is first and got[2] is second


def test_insert_ordered_after_popleft_becomes_the_new_head():
    f = Fifo()
    for v in range(10):
        f.append(Box(v))
    for _ in range(6):
        f.popleft()
    f.insert_ordered(Box(0), key)  # smaller than everything left: the new head
    assert [x.v for x in f] == [0, 6, 7, 8, 9]
    assert f.popleft().v == 0 and f.peek().v == 6


def test_insert_ordered_after_compaction():
    f = Fifo()
    for v in range(200):
        f.append(Box(v))
    for _ in range(150):
        f.popleft()
    f.insert_ordered(Box(120), key)
    f.insert_ordered(Box(175), key)
    assert [x.v for x in f][:3] == [120, 150, 151]
    assert len(f) == 52
    assert [x.v for x in f].index(175) == 26  # after 150..174 and the first 175


def test_clear():
    f = Fifo()
    for i in range(100):
        f.append(i)
    for _ in range(70):
        f.popleft()
    f.clear()
    assert len(f) == 0 and not f and list(f) == [] and f.peek() is None
    f.append(1)
    assert f.popleft() == 1


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("append"), st.integers(0, 3)),
            st.tuples(st.just("popleft"), st.just(0)),
            st.tuples(st.just("remove"), st.integers(0, 60)),
            st.tuples(st.just("insert_ordered"), st.integers(0, 80)),
            st.tuples(st.just("clear"), st.just(0)),
        ),
        max_size=120,
    )
)
def test_random_operations_match_a_list(ops):
    """Appends come with non-decreasing keys (as a queue's sequence numbers do), so the list
    stays sorted and insert_ordered is always used as intended."""
    f = Fifo()
    model = []
    made = []  # every Box ever created, so remove() may target popped or never-added ones
    last = 0
    for op, arg in ops:
        if op == "append":
            last += arg
            b = Box(last)
            made.append(b)
            f.append(b)
            model.append(b)
        elif op == "popleft":
            if model:
                assert f.popleft() is model.pop(0)
            else:
                with pytest.raises(IndexError):
                    f.popleft()
        elif op == "remove":
            target = made[arg % len(made)] if made else Box(-1)
            i = next((i for i, x in enumerate(model) if x is target), None)
            assert f.remove(target) is (i is not None)
            if i is not None:
                del model[i]
        elif op == "insert_ordered":
            b = Box(arg)
            made.append(b)
            f.insert_ordered(b, key)
            i = len(model)
            while i > 0 and model[i - 1].v > arg:
                i -= 1
            model.insert(i, b)
            last = max(last, arg)
        else:
            f.clear()
            model.clear()
        assert len(f) == len(model) and bool(f) is bool(model)
        assert f.peek() is (model[0] if model else None)
        got = list(f)
        assert len(got) == len(model) and all(a is b for a, b in zip(got, model, strict=True))
