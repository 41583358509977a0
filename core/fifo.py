"""A first-in-first-out list with O(1) append and popleft that also works on MicroPython, whose
deque has a fixed maximum length and no iteration or removal."""


class Fifo:
    __slots__ = ("_items", "_head")

    def __init__(self):
        self._items = []
        self._head = 0

    def __len__(self):
        return len(self._items) - self._head

    def __bool__(self):
        return len(self._items) > self._head

    def __iter__(self):
        items = self._items
        for i in range(self._head, len(items)):
            yield items[i]

    def append(self, item):
        self._items.append(item)

    def peek(self):
        return self._items[self._head] if len(self._items) > self._head else None

    def popleft(self):
        items = self._items
        if len(items) <= self._head:
            raise IndexError("pop from an empty Fifo")
        item = items[self._head]
        items[self._head] = None
        self._head += 1
        if self._head > 64 and self._head * 2 > len(items):
            # Compact once the dead prefix is the larger half: amortised O(1).
            self._items = items[self._head :]
            self._head = 0
        return item

    def remove(self, item):
        """Remove the first occurrence of `item` (by identity); returns whether it was found."""
        items = self._items
        for i in range(self._head, len(items)):
            if items[i] is item:
                if i == self._head:
                    self.popleft()
                else:
                    items.pop(i)
                return True
        return False

    def insert_ordered(self, item, key):
        """Insert keeping the list sorted by `key(item)` (used to put a set-aside message back
        in its original position)."""
        items = self._items
        k = key(item)
        i = len(items)
        while i > self._head and key(items[i - 1]) > k:
            i -= 1
        items.insert(i, item)

    def clear(self):
        self._items = []
        self._head = 0
