"""The queue contract (tests/queue_contract.py) bound to SqliteQueue (edge/sqlitequeue.py), each
queue on a fresh database file of its own (a real SqliteStore, closed after the test).

SqliteQueue's clock is wall-clock seconds (its times are stored), so the fake clock starts at a
realistic epoch; the wake-up tests run on the real clock, as MemoryQueue's do."""

import os
import shutil
import tempfile

import pytest

from flowcatalyst.edge.sqlitequeue import SqliteQueue
from flowcatalyst.edge.sqlstore import SqliteStore
from tests.queue_contract import MODEL_SETTINGS, FakeClock, QueueContract, QueueKind, QueueMachine

WALL_START = 1_700_000_000.0


class SqliteQueues(QueueKind):
    name = "sqlite"
    same_id_in_queue_is_duplicate = True
    dead_lettered_metric = "stored"

    def __init__(self, directory=None, synchronous="FULL"):
        self._own_directory = directory is None
        self.directory = tempfile.mkdtemp(prefix="fc-sqlite-") if directory is None else str(directory)
        self.synchronous = synchronous
        self.stores = []

    def __call__(self, real_clock=False, name="q", **options):
        path = os.path.join(self.directory, "queue%d.db" % len(self.stores))
        store = SqliteStore(path, synchronous=self.synchronous)
        self.stores.append(store)
        if not real_clock:
            options.setdefault("clock", FakeClock(WALL_START))
        return SqliteQueue(store, name, **options)

    def close(self):
        for store in self.stores:
            store.close()
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def make_queue(tmp_path):
    queues = SqliteQueues(tmp_path)
    yield queues
    queues.close()


class TestSqliteQueueContract(QueueContract):
    pass


class SqliteQueueMachine(QueueMachine):
    queues = SqliteQueues  # a temporary directory per example


SqliteQueueMachine.TestCase.settings = MODEL_SETTINGS
test_sqlite_queue_model = SqliteQueueMachine.TestCase
