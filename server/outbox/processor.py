"""The outbox processor (spec/platform.md §5.2): forwards the rows an application wrote to its
outbox table to the platform's batch endpoints, in order per message group, and deletes them.

Theory of operation. A poll claims rows (repository.py: a group already out, or blocked
behind a failure, is not claimed; a claim never splits a group's order) as long as there is
room: at most `max_in_flight` rows out and `buffer_size` claimed but not yet sending. The
claimed rows are sent in batches of at most `api_batch_size` rows of one type:

- ungrouped rows, in any batch;
- grouped rows in rounds: each round sends the next row of every group still going (the
  heads of many groups share batches), and a group's next row goes only after its previous
  one was forwarded. So a row the platform refuses never has a later row of its group in
  the same request, already stored behind it. A group whose row failed stops; its rows not
  yet sent are released to PENDING untouched, and go after the failed row, which waits out
  its retry backoff (or, failed for good with block-on-error, holds the group until an
  operator requeues it).

At most `max_concurrent_groups` batches are out at once. Each answer is mapped per item
(results.py) and recorded in one transaction: forwarded rows deleted, retryable failures
back to PENDING with `retry_count + 1`, the rest kept with their status code.

When the platform cannot be reached (no connection, a timeout, 502/503/504 for the whole
batch) the rows are not at fault: they go back to PENDING without using a retry, the rest of
their unit with them, and claiming pauses for a backoff that grows while the outage lasts
(the retry backoff schedule). So an outage of any length loses nothing and reorders nothing.

A recovery loop returns rows left IN_PROGRESS longer than `processing_timeout` (their
processor died) to PENDING. Database calls are blocking DB-API calls on one worker thread
per table.
"""

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor

from flowcatalyst.core.httpclient import HttpClient, TransportError
from flowcatalyst.core.log import logger

from . import results, schema
from .repository import OutboxRepository

_log = logger("outbox")


class Table:
    """One outbox table: its repository and the worker thread its calls run on."""

    def __init__(self, repository):
        self.repository = repository
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="outbox-" + repository.table)
        self.stats = None

    async def call(self, method, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, method, *args)


class OutboxProcessor:
    def __init__(self, settings, metrics):
        self.settings = settings
        s = settings
        self.tables = [
            Table(OutboxRepository(s.db_url, name, s.block_on_error, s.retry_backoff))
            for name in s.tables()
        ]
        self.client = HttpClient(
            connect_timeout=s.connect_timeout, request_timeout=s.http_timeout, max_redirects=0
        )
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if s.api_token:
            self.headers["Authorization"] = "Bearer " + s.api_token
        self.slots = asyncio.Semaphore(s.max_concurrent_groups)
        self.in_flight = 0
        self.buffered = 0
        self.room = asyncio.Event()  # set when rows finish: a full processor may claim again
        self.tasks = set()
        self.outages = 0  # consecutive batches that found the platform unreachable
        self.paused_until = 0.0  # monotonic time before which no claims are made
        self.loops = []
        self.running = False
        self.last_poll = None
        self.last_error = None
        self.batches = metrics.counter(
            "fc_outbox_batches_total", "Batches sent to the platform", ("type", "outcome")
        )
        self.items = metrics.counter(
            "fc_outbox_items_total", "Rows forwarded, by the platform's result", ("type", "status")
        )
        self.rows = metrics.gauge("fc_outbox_rows", "Rows in the outbox table", ("table", "status"))
        self.oldest = metrics.gauge(
            "fc_outbox_oldest_pending_seconds", "Age of the oldest pending row", ("table",)
        )
        self.in_flight_gauge = metrics.gauge("fc_outbox_in_flight", "Rows claimed and not finished")
        self.recovered = metrics.counter(
            "fc_outbox_recovered_total", "Rows returned from IN_PROGRESS after a processor died"
        )
        metrics.add_collector(self._collect)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self):
        for table in self.tables:
            await table.call(table.repository.open)
        self.running = True
        for table in self.tables:
            self.loops.append(asyncio.create_task(self._poll_loop(table), name="outbox-poll"))
        self.loops.append(asyncio.create_task(self._recovery_loop(), name="outbox-recovery"))
        _log.info(
            "outbox processor started",
            tables=[t.repository.table for t in self.tables],
            database=self.tables[0].repository.dialect if self.tables else None,
            platform=self.settings.api_base_url,
        )
        return self

    async def stop(self, timeout=None):
        """Stop claiming; let the batches out finish (up to `timeout`), then release the rest."""
        self.running = False
        for task in self.loops:
            task.cancel()
        await asyncio.gather(*self.loops, return_exceptions=True)
        if self.tasks:
            _, pending = await asyncio.wait(
                set(self.tasks),
                timeout=self.settings.shutdown_timeout if timeout is None else timeout,
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for table in self.tables:
            await table.call(table.repository.close)
            table.executor.shutdown(wait=True)
        await self.client.close()
        _log.info("outbox processor stopped")

    # -- polling --------------------------------------------------------------------------------

    async def _poll_loop(self, table):
        s = self.settings
        while self.running:
            room = min(
                s.poll_batch_size, s.max_in_flight - self.in_flight, s.buffer_size - self.buffered
            )
            if room <= 0:
                self.room.clear()
                await self._wait(self.room, s.poll_interval)
                continue
            try:
                rows = await table.call(table.repository.claim, room, s.api_batch_size)
            except Exception as e:
                self.last_error = "%s: %s" % (type(e).__name__, e)
                _log.error("claim failed", table=table.repository.table, error=self.last_error)
                await asyncio.sleep(s.poll_interval)
                continue
            self.last_poll = time.time()
            if rows:
                self._start_units(table, rows)
            if len(rows) < room:
                await asyncio.sleep(s.poll_interval)
            else:
                await asyncio.sleep(0)

    @staticmethod
    async def _wait(event, seconds):
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    def _start_units(self, table, rows):
        self.in_flight += len(rows)
        self.buffered += len(rows)
        grouped, ungrouped = split(rows, self.settings.api_batch_size)
        work = [self._send_guarded(table, batch) for batch in ungrouped]
        if grouped:
            work.append(self._send_rounds(table, grouped))
        for coroutine in work:
            task = asyncio.create_task(coroutine)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _recovery_loop(self):
        s = self.settings
        while self.running:
            for table in self.tables:
                try:
                    count = await table.call(table.repository.recover, s.processing_timeout)
                except Exception as e:
                    _log.error("recovery failed", table=table.repository.table, error=str(e))
                    continue
                if count:
                    self.recovered.inc((), count)
                    _log.warning(
                        "rows left IN_PROGRESS by a stopped processor returned to PENDING",
                        table=table.repository.table,
                        rows=count,
                    )
            await asyncio.sleep(s.recovery_interval)

    # -- sending --------------------------------------------------------------------------------

    async def _send_rounds(self, table, groups):
        """Send grouped rows round by round: every group's next row, until each group is done
        or stopped by a failure (its rest released)."""
        try:
            while groups:
                heads = [queue[0] for queue in groups.values()]
                forwarded = set()
                for sent in await asyncio.gather(
                    *[
                        self._send_guarded(table, b)
                        for b in by_type(heads, self.settings.api_batch_size)
                    ]
                ):
                    forwarded |= sent
                for group in list(groups):
                    queue = groups[group]
                    if queue.pop(0).id in forwarded and queue:
                        continue
                    del groups[group]
                    if queue:  # stopped by a failure: the rest goes back, behind it
                        await self._release(table, queue)
        finally:  # cancelled (shutdown): what was not sent goes back
            rest = [row for queue in groups.values() for row in queue]
            groups.clear()
            if rest:
                await self._release(table, rest)

    async def _send_guarded(self, table, batch):
        """Send one batch under the concurrency limit; the ids forwarded. Whatever goes wrong,
        every row of the batch is finished or released."""
        async with self.slots:
            self.buffered -= len(batch)
            try:
                return await self._send_batch(table, batch)
            except Exception as e:  # the database failed under us: logged, the rows go back
                self.last_error = "%s: %s" % (type(e).__name__, e)
                _log.error("sending a batch failed", rows=len(batch), error=self.last_error)
                await self._release(table, batch, count=False)
                return set()
            except asyncio.CancelledError:
                await self._release(table, batch, count=False)
                raise
            finally:
                self._finished(len(batch))

    async def _release(self, table, rows, count=True):
        """Back to PENDING, untouched (not sent, or the platform was unavailable)."""
        try:
            await table.call(table.repository.finish, [], [], [], [r.id for r in rows])
        except Exception as e:  # they stay IN_PROGRESS: recovery returns them
            _log.error("release failed", rows=len(rows), error=str(e))
        if count:
            self.buffered -= len(rows)
            self._finished(len(rows))

    def _finished(self, count):
        self.in_flight -= count
        self.room.set()

    async def _send_batch(self, table, batch):
        """POST one same-type batch and record each row's outcome; the ids forwarded."""
        row_type = batch[0].type
        items, unreadable = [], {}
        for row in batch:
            try:
                items.append(json.loads(row.payload))
            except ValueError as e:
                unreadable[row.id] = "the payload is not JSON: %s" % e
        sendable = [row for row in batch if row.id not in unreadable]
        outcomes = {}
        if sendable:
            answer = await self._post(row_type, items)
            if answer is None:  # the platform is unavailable: no row is at fault
                await table.call(table.repository.finish, [], [], [], [r.id for r in batch])
                return set()
            self._platform_available()
            for row, item in zip(sendable, answer, strict=True):
                outcomes[row.id] = item
        for row_id, error in unreadable.items():
            outcomes[row_id] = results.ItemResult(schema.BAD_REQUEST, error)
        deleted, retried, failed = [], [], []
        for row in batch:
            item = outcomes[row.id]
            self.items.inc((row_type, schema.STATUS_NAMES[item.status]))
            decision = results.decide(item, row.retry_count, self.settings.max_retries)
            if decision == results.DELETE:
                deleted.append(row.id)
            elif decision == results.RETRY:
                retried.append((row.id, item.error or ""))
            else:
                failed.append((row.id, item.status, item.error))
                _log.error(
                    "outbox row failed for good",
                    id=row.id,
                    type=row_type,
                    group=row.message_group,
                    status=schema.STATUS_NAMES[item.status],
                    error=item.error,
                )
        try:
            await table.call(table.repository.finish, deleted, retried, failed, [])
        except Exception as e:  # the rows stay IN_PROGRESS: recovery returns them, then resent
            self.last_error = "%s: %s" % (type(e).__name__, e)
            _log.error("recording a batch failed", rows=len(batch), error=self.last_error)
            return set()
        return set(deleted)

    async def _post(self, row_type, items):
        """The platform's answer per item, or None when it is unavailable."""
        url = self.settings.api_base_url.rstrip("/") + results.PATHS[row_type]
        body = json.dumps({"items": items}).encode()
        try:
            response = await self.client.send("POST", url, self.headers, body)
        except TransportError as e:
            self.batches.inc((row_type, "unreachable"))
            self._platform_unavailable("%s: %s" % (url, e))
            return None
        self.batches.inc((row_type, str(response.status)))
        if response.status in results.UNAVAILABLE:
            self._platform_unavailable("%s answered %d" % (url, response.status))
            return None
        return results.from_response(len(items), response.status, response.body)

    def _platform_unavailable(self, why):
        backoff = self.settings.retry_backoff
        wait = backoff[min(self.outages, len(backoff) - 1)]
        self.outages += 1
        self.paused_until = max(self.paused_until, time.monotonic() + wait)
        self.last_error = "platform unavailable: %s" % why
        if self.outages == 1 or self.outages % 10 == 0:
            _log.warning(
                "platform unavailable; rows wait", error=why, retry_in=wait, outages=self.outages
            )

    def _platform_available(self):
        if self.outages:
            _log.info("platform available again", after_failures=self.outages)
        self.outages = 0

    # -- health and metrics ---------------------------------------------------------------------

    async def refresh_stats(self):
        for table in self.tables:
            try:
                table.stats = await table.call(table.repository.stats)
            except Exception as e:
                self.last_error = "%s: %s" % (type(e).__name__, e)
                table.stats = None

    def _collect(self):
        self.in_flight_gauge.set((), self.in_flight)
        for table in self.tables:
            if table.stats is None:
                continue
            name = table.repository.table
            for code, label in schema.STATUS_NAMES.items():
                self.rows.set((name, label), table.stats["by_status"].get(code, 0))
            self.oldest.set((name,), table.stats["oldest_pending_age"] or 0)

    def health(self):
        return {
            "running": self.running and all(not t.done() for t in self.loops),
            "inFlight": self.in_flight,
            "lastPoll": self.last_poll,
            "lastError": self.last_error,
        }


def split(rows, batch_size):
    """Claimed rows (in created order) as ({group: [rows in order]}, [ungrouped batches])."""
    groups = {}
    ungrouped = []
    for row in rows:
        if row.message_group is None:
            ungrouped.append(row)
        else:
            groups.setdefault(row.message_group, []).append(row)
    return groups, by_type(ungrouped, batch_size)


def by_type(rows, batch_size):
    """`rows` as same-type batches of at most `batch_size`, in their order within each type."""
    out = []
    per_type = {}
    for row in rows:
        per_type.setdefault(row.type, []).append(row)
    for same in per_type.values():
        out.extend(same[i : i + batch_size] for i in range(0, len(same), batch_size))
    return out
