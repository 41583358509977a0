"""Configuration from a platform: fetch the router config over HTTP and keep a Router in line
with it (router spec §2.3–§2.4).

Theory of operation.
- What is fetched: every configured URL (a comma-separated list is allowed) is read with
  `GET`, `Accept: application/json` and, when an API key is set, `X-API-Key: <key>`. The body is
  the router-config JSON that `parse_router_config` reads (`processingPools`, `queues`,
  optional `connections`).
- Retries: all URLs are fetched in parallel; each gets up to `attempts` attempts (12),
  `retry_delay` seconds apart (5), each limited to `timeout` seconds (30). A transport error,
  a non-2xx status, a body that is not JSON or a config that `parse_router_config` rejects is a
  failed attempt with a reason (the latter names the JSON path, e.g.
  `invalid config: processingPools[0].concurrency: must be >= 0, got -2`). When every URL fails,
  `ConfigSyncError` lists each URL with its last reason.
- Merge rule: the configs of the URLs that answered are merged in URL order, first wins: pools
  are deduplicated by `code`, queues by `queueUri`; a later duplicate with different settings is
  dropped and reported as a conflict naming the kept and the dropped source. A later queue with
  a new URI but the name of a kept queue is dropped too (the router identifies consumers by
  name). Top-level `connections` is the largest. A single source passes through unchanged.
- Change detection: the merged config is compared (`RouterConfig.__eq__`: pool code, effective
  concurrency, rate limit; queue name, URI, connections, visibility timeout) with the one this
  sync applied last; only a difference calls `apply` (the Router's `apply_config`), which
  resizes, creates and drains pools and starts and stops consumers in place.
- Periodic behaviour: `start()` runs one task that waits `interval` seconds (300), syncs, and
  waits again, so syncs never overlap; the first tick is skipped because the caller makes the
  initial sync itself (`await sync.sync_once()`, where a failure should stop the start-up).
  Inside a periodic sync each URL gets only `periodic_attempts = min(attempts, 3)` attempts: the
  12 x 5 s start-up schedule is for a platform that is still coming up, whereas a periodic sync
  that fails is simply tried again at the next tick (worst case with the defaults: 3 x 30 s +
  2 x 5 s = 100 s, a third of the interval).
- Failure behaviour: a periodic sync that fails keeps the current config, adds a
  CONFIGURATION/WARN warning "Config sync failed: …" and the loop goes on. When only some URLs
  fail, each failing URL's last good config stands in for it (with a warning), so a source that
  is briefly unreachable does not drain its pools and stop its queues; a URL that has never
  answered is left out. Conflicts are logged and become CONFIGURATION/WARN warnings when they
  first appear (not again at every tick while they persist).

Where this deliberately differs from the Rust `ConfigSyncService`:
- the Rust docs say later URLs win; its code is first-wins, and so is this;
- the Rust change hash leaves out the visibility timeout; here a changed visibility timeout is a
  change (the queue's consumer is restarted with it);
- Rust merges whatever answered, so one unreachable URL drops its pools and queues until it
  answers again; here its last good config is kept;
- conflicting duplicates are also reported as warnings, not only logged, and a queue name that
  two URIs claim is a conflict rather than a silent overwrite;
- periodic syncs use fewer attempts than the start-up sync (see above).
"""

import asyncio

from . import jsoncodec
from . import warnings as w
from .compat import MICROPYTHON, create_task, sleep, wall_time
from .config import ConfigError, RouterConfig, parse_router_config
from .httpclient import HttpClient, split_url
from .log import logger

ATTEMPTS = 12
RETRY_DELAY = 5.0
TIMEOUT = 30.0
INTERVAL = 300.0
PERIODIC_ATTEMPTS = 3
MAX_CONFIG_BYTES = 1048576 if MICROPYTHON else 16 * 1048576

_log = logger("configsync")


class ConfigSyncError(Exception):
    """No URL gave a usable config; `failures` is a list of (url, last reason)."""

    def __init__(self, failures):
        super().__init__("no config URL gave a usable config: " + "; ".join("%s (%s)" % (u, r) for u, r in failures))
        self.failures = failures


def parse_urls(urls):
    """A list of config URLs from a comma-separated string or a list; blanks and repeats are
    dropped. Raises ValueError when none is left or one is not an http(s) URL."""
    items = urls.split(",") if isinstance(urls, str) else list(urls or ())
    out = []
    for item in items:
        url = item.strip()
        if url and url not in out:
            split_url(url)  # ValueError for anything the HTTP client cannot fetch
            out.append(url)
    if not out:
        raise ValueError("no config URL given")
    return out


# -- merging ----------------------------------------------------------------------------------


def merge_configs(sources):
    """Merge [(url, RouterConfig), ...] (URL order) first-wins. Returns (RouterConfig,
    conflicts), conflicts being human-readable strings naming the kept and dropped source."""
    if not sources:
        raise ValueError("no config to merge")
    if len(sources) == 1:
        return sources[0][1], []
    pools, queues, conflicts = [], [], []
    pool_by_code, queue_by_uri, queue_by_name = {}, {}, {}
    for url, config in sources:
        for pc in config.pools:
            kept = pool_by_code.get(pc.code)
            if kept is None:
                pool_by_code[pc.code] = (url, pc)
                pools.append(pc)
            elif not (kept[1] == pc):
                conflicts.append(_conflict("pool %r" % pc.code, kept, (url, pc), _pool_text))
        for qc in config.queues:
            kept = queue_by_uri.get(qc.uri) or queue_by_name.get(qc.name)
            if kept is None:
                queue_by_uri[qc.uri] = queue_by_name[qc.name] = (url, qc)
                queues.append(qc)
            elif not (kept[1] == qc):
                what = "queue %r" % qc.uri if kept[1].uri == qc.uri else "queue name %r" % qc.name
                conflicts.append(_conflict(what, kept, (url, qc), _queue_text))
    connections = max(config.connections for _, config in sources)
    return RouterConfig(pools, queues, connections), conflicts


def _conflict(what, kept, dropped, text):
    return "%s: kept %s from %s, dropped %s from %s" % (what, text(kept[1]), kept[0], text(dropped[1]), dropped[0])


def _pool_text(pc):
    return "{concurrency %d, rateLimitPerMinute %s}" % (pc.concurrency, pc.rate_limit_per_minute)


def _queue_text(qc):
    return "{queueName %s, queueUri %s, connections %d, visibilityTimeout %d}" % (qc.name, qc.uri, qc.connections, qc.visibility_timeout)


# -- fetching ---------------------------------------------------------------------------------


async def fetch_sources(urls, client, attempts=ATTEMPTS, retry_delay=RETRY_DELAY, timeout=TIMEOUT, api_key=None):
    """Fetch every URL in parallel: [(url, RouterConfig or None, last failure reason or None)]
    in URL order."""
    headers = {"Accept": "application/json"}
    if api_key:
        headers["X-API-Key"] = api_key
    results = await asyncio.gather(*[_fetch_one(client, url, headers, attempts, retry_delay, timeout) for url in urls])
    return [(urls[i], results[i][0], results[i][1]) for i in range(len(urls))]


async def _fetch_one(client, url, headers, attempts, retry_delay, timeout):
    reason = "not attempted"
    for attempt in range(1, max(attempts, 1) + 1):
        if attempt > 1:
            await sleep(retry_delay)
        config, reason = await _attempt(client, url, headers, timeout)
        if config is not None:
            return config, None
        _log.warn("config fetch failed", url=url, attempt=attempt, attempts=attempts, reason=reason)
    return None, reason


async def _attempt(client, url, headers, timeout):
    """(RouterConfig, None) or (None, reason)."""
    try:
        response = await client.send("GET", url, headers, b"", timeout)
    except Exception as e:  # TransportError, or whatever another transport raises
        return None, str(e) or type(e).__name__
    if not 200 <= response.status < 300:
        snippet = _snippet(response.body)
        return None, "HTTP %d%s" % (response.status, ": " + snippet if snippet else "")
    if getattr(response, "truncated", False):
        return None, "response body larger than the client accepts (%d bytes read)" % len(response.body)
    try:
        data = jsoncodec.loads(response.body)
    except ValueError as e:  # also bad UTF-8
        return None, "invalid JSON: %s" % (str(e) or type(e).__name__)
    try:
        return parse_router_config(data), None
    except ConfigError as e:
        return None, "invalid config: %s" % e


def _snippet(body, limit=200):
    try:
        text = bytes(body[:limit]).decode()
    except (ValueError, TypeError):
        return ""
    return " ".join(text.split())


def _default_client(timeout):
    return HttpClient(connect_timeout=min(10.0, timeout), request_timeout=timeout, max_response_bytes=MAX_CONFIG_BYTES)


async def fetch_config(urls, client=None, attempts=ATTEMPTS, retry_delay=RETRY_DELAY, timeout=TIMEOUT, api_key=None):
    """Fetch and merge the config of every URL (list or comma-separated string).
    Returns (RouterConfig, conflicts); raises ConfigSyncError when every URL failed."""
    urls = parse_urls(urls)
    own = client is None
    if own:
        client = _default_client(timeout)
    try:
        results = await fetch_sources(urls, client, attempts, retry_delay, timeout, api_key)
    finally:
        if own:
            await client.close()
    good = [(url, config) for url, config, _ in results if config is not None]
    if not good:
        raise ConfigSyncError([(url, reason) for url, _, reason in results])
    return merge_configs(good)


# -- keeping a router in line -----------------------------------------------------------------


class ConfigSync:
    """Fetches the config from `urls` and hands every changed one to `apply` (an async callable
    taking a RouterConfig, e.g. `router.apply_config`). Monitoring: `current` (last applied
    config), `last_success` (wall time), `last_error`, `failures` (consecutive failed syncs)."""

    def __init__(
        self,
        urls,
        apply,
        client=None,
        interval=INTERVAL,
        attempts=ATTEMPTS,
        retry_delay=RETRY_DELAY,
        timeout=TIMEOUT,
        api_key=None,
        warnings=None,
    ):
        self.urls = parse_urls(urls)
        if interval <= 0 or attempts < 1 or timeout <= 0 or retry_delay < 0:
            raise ValueError("interval and timeout must be > 0, attempts >= 1, retry_delay >= 0")
        self.apply = apply
        self._own_client = client is None
        self.client = _default_client(timeout) if client is None else client
        self.interval = interval
        self.attempts = attempts
        self.periodic_attempts = min(attempts, PERIODIC_ATTEMPTS)
        self.retry_delay = retry_delay
        self.timeout = timeout
        self.api_key = api_key
        self.warnings = warnings
        self.current = None
        self.last_success = None
        self.last_error = None
        self.failures = 0
        self.conflicts = []
        self._last_good = {}  # url -> the last config it served
        self._task = None
        self._stopping = False
        self._applying = False

    async def sync_once(self, attempts=None):
        """Fetch, merge and apply if changed; True when `apply` was called. Raises
        ConfigSyncError when no URL answered (and whatever `apply` raises)."""
        try:
            applied = await self._sync(self.attempts if attempts is None else attempts)
        except Exception as e:
            self.failures += 1
            self.last_error = str(e) or type(e).__name__
            raise
        self.failures = 0
        self.last_error = None
        self.last_success = wall_time()
        return applied

    async def _sync(self, attempts):
        results = await fetch_sources(self.urls, self.client, attempts, self.retry_delay, self.timeout, self.api_key)
        sources = []
        for url, config, _ in results:
            if config is not None:
                self._last_good[url] = config
                sources.append((url, config))
        if not sources:
            raise ConfigSyncError([(url, reason) for url, _, reason in results])
        if len(sources) < len(results):
            sources = self._stand_in(results)
        config, conflicts = merge_configs(sources)
        self._report_conflicts(conflicts)
        if self.current is not None and config == self.current:
            return False
        self._applying = True
        try:
            summary = await self.apply(config)
        finally:
            self._applying = False
        self.current = config
        _log.info("config applied", pools=len(config.pools), queues=len(config.queues), summary=summary)
        return True

    def _stand_in(self, results):
        """Sources in URL order, a failed URL replaced by its last good config (or left out)."""
        sources = []
        for url, config, reason in results:
            if config is None:
                config = self._last_good.get(url)
                what = "using its last good config" if config is not None else "left out (it never answered)"
                self._warn("Config source %s failed (%s): %s" % (url, reason, what))
            if config is not None:
                sources.append((url, config))
        return sources

    def _report_conflicts(self, conflicts):
        for text in conflicts:
            if text not in self.conflicts:
                self._warn("Config conflict: " + text)
        self.conflicts = conflicts

    def _warn(self, message):
        _log.warn(message)
        if self.warnings is not None:
            self.warnings.add(w.CONFIGURATION, "WARN", message, "ConfigSync")

    # -- periodic ---------------------------------------------------------------------------------

    def start(self):
        """Sync every `interval` seconds in a task; the first sync is one interval away."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = create_task(self._run())
        return self._task

    async def _run(self):
        while not self._stopping:
            await sleep(self.interval)
            if self._stopping:
                break
            try:
                await self.sync_once(self.periodic_attempts)
            except Exception as e:  # keep the current config and try again next tick
                self._warn("Config sync failed: %s" % (str(e) or type(e).__name__))

    async def stop(self):
        """End the periodic task at once (an apply under way is let finish) and close the HTTP
        client this sync created."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            if not self._applying:
                task.cancel()
            try:
                await task
            except BaseException:  # CancelledError, or what the task died of
                pass
        if self._own_client:
            await self.client.close()

    def status(self):
        """A JSON-ready summary for monitoring endpoints."""
        return {
            "urls": list(self.urls),
            "interval": self.interval,
            "running": self._task is not None and not self._task.done(),
            "lastSuccess": self.last_success,
            "lastError": self.last_error,
            "failures": self.failures,
            "conflicts": list(self.conflicts),
            "pools": len(self.current.pools) if self.current is not None else None,
            "queues": len(self.current.queues) if self.current is not None else None,
        }
