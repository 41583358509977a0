"""The router configuration: processing pools and queues (router spec §2).

The wire shape is the one the platform serves at its config endpoint (camelCase,
`processingPools` and `queues` required). Errors raise `ConfigError` with the JSON path of the
offending value, e.g. `processingPools[2].concurrency: must be an integer >= 0, got "ten"`.
"""

DEFAULT_POOL_CODE = "DEFAULT-POOL"
DEFAULT_POOL_CONCURRENCY = 20
DEFAULT_VISIBILITY_TIMEOUT = 120
MAX_POOLS = 10000
POOL_WARNING_THRESHOLD = 5000
MAX_VISIBILITY_TIMEOUT = 43200  # SQS's limit, 12 h


class ConfigError(ValueError):
    def __init__(self, path, reason):
        super().__init__("%s: %s" % (path, reason) if path else reason)
        self.path = path
        self.reason = reason


class PoolConfig:
    __slots__ = ("code", "concurrency", "rate_limit_per_minute")

    def __init__(self, code, concurrency=DEFAULT_POOL_CONCURRENCY, rate_limit_per_minute=None):
        self.code = code
        self.concurrency = concurrency
        self.rate_limit_per_minute = rate_limit_per_minute or None

    @property
    def effective_concurrency(self):
        """Concurrency 0 means "derive it": one worker per request-per-second of the rate
        limit, at least 1 (as RS and GO)."""
        if self.concurrency > 0:
            return self.concurrency
        if self.rate_limit_per_minute:
            return max(self.rate_limit_per_minute // 60, 1)
        return 1

    def __eq__(self, other):
        return (
            isinstance(other, PoolConfig)
            and self.code == other.code
            and self.effective_concurrency == other.effective_concurrency
            and self.rate_limit_per_minute == other.rate_limit_per_minute
        )

    def to_dict(self):
        return {
            "code": self.code,
            "concurrency": self.concurrency,
            "rateLimitPerMinute": self.rate_limit_per_minute,
        }


class QueueConfig:
    __slots__ = ("name", "uri", "connections", "visibility_timeout")

    def __init__(self, uri, name=None, connections=1, visibility_timeout=DEFAULT_VISIBILITY_TIMEOUT):
        self.uri = uri
        self.name = name or uri
        self.connections = connections
        self.visibility_timeout = visibility_timeout

    def __eq__(self, other):
        return (
            isinstance(other, QueueConfig)
            and self.name == other.name
            and self.uri == other.uri
            and self.connections == other.connections
            and self.visibility_timeout == other.visibility_timeout
        )

    def to_dict(self):
        return {
            "queueName": self.name,
            "queueUri": self.uri,
            "connections": self.connections,
            "visibilityTimeout": self.visibility_timeout,
        }


class RouterConfig:
    __slots__ = ("pools", "queues", "connections")

    def __init__(self, pools=(), queues=(), connections=1):
        self.pools = list(pools)
        self.queues = list(queues)
        self.connections = connections

    def pool(self, code):
        for p in self.pools:
            if p.code == code:
                return p
        return None

    def __eq__(self, other):
        return (
            isinstance(other, RouterConfig)
            and _sorted_by(self.pools, "code") == _sorted_by(other.pools, "code")
            and _sorted_by(self.queues, "name") == _sorted_by(other.queues, "name")
        )

    def to_dict(self):
        return {
            "processingPools": [p.to_dict() for p in self.pools],
            "queues": [q.to_dict() for q in self.queues],
            "connections": self.connections,
        }


def parse_router_config(data):
    """Parse the platform's router-config JSON (already decoded) into a `RouterConfig`."""
    if not isinstance(data, dict):
        raise ConfigError("", "router config must be a JSON object")
    pools_data = _list(data, "processingPools")
    queues_data = _list(data, "queues")

    pools = []
    seen = {}
    for i, item in enumerate(pools_data):
        path = "processingPools[%d]" % i
        pool = parse_pool(item, path)
        if pool.code in seen:
            raise ConfigError(path + ".code", "duplicate pool code %r (also at index %d)" % (pool.code, seen[pool.code]))
        seen[pool.code] = i
        pools.append(pool)
    if len(pools) > MAX_POOLS:
        raise ConfigError("processingPools", "more than %d pools" % MAX_POOLS)

    queues = []
    names = {}
    for i, item in enumerate(queues_data):
        path = "queues[%d]" % i
        queue = parse_queue(item, path)
        if queue.name in names:
            raise ConfigError(path + ".queueName", "duplicate queue %r (also at index %d)" % (queue.name, names[queue.name]))
        names[queue.name] = i
        queues.append(queue)

    connections = _int(data, "connections", "connections", 1, minimum=1)
    return RouterConfig(pools, queues, connections)


def parse_pool(item, path="pool"):
    if not isinstance(item, dict):
        raise ConfigError(path, "must be an object")
    code = item.get("code")
    if not isinstance(code, str) or not code.strip():
        raise ConfigError(path + ".code", "is required and must be a non-empty string")
    concurrency = _int(item, "concurrency", path + ".concurrency", DEFAULT_POOL_CONCURRENCY, minimum=0)
    rate = _int(item, "rateLimitPerMinute", path + ".rateLimitPerMinute", None, minimum=0)
    return PoolConfig(code, concurrency, rate)


def parse_queue(item, path="queue"):
    if not isinstance(item, dict):
        raise ConfigError(path, "must be an object")
    uri = item.get("queueUri", item.get("uri"))
    if not isinstance(uri, str) or not uri.strip():
        raise ConfigError(path + ".queueUri", "is required and must be a non-empty string")
    name = item.get("queueName", item.get("name"))
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ConfigError(path + ".queueName", "must be a non-empty string when given")
    connections = _int(item, "connections", path + ".connections", 1, minimum=1)
    visibility = _int(
        item,
        "visibilityTimeout",
        path + ".visibilityTimeout",
        DEFAULT_VISIBILITY_TIMEOUT,
        minimum=1,
        maximum=MAX_VISIBILITY_TIMEOUT,
    )
    return QueueConfig(uri, name, connections, visibility)


def parse_queue_options(item, path="queue"):
    """Settings a queue entry may carry beside the router config, for the local queues
    (memory, SQLite): maxReceiveCount (10), dedupWindowSeconds (300), waitSeconds (20: how
    long a poll waits for a message) and maxMessages (none). Keyword arguments for the queue."""
    return {
        "max_receive_count": _int(item, "maxReceiveCount", path + ".maxReceiveCount", 10, minimum=1),
        "dedup_window": _number(item, "dedupWindowSeconds", path + ".dedupWindowSeconds", 300),
        "wait_seconds": _number(item, "waitSeconds", path + ".waitSeconds", 20),
        "max_messages": _int(item, "maxMessages", path + ".maxMessages", None, minimum=1),
    }


def _number(data, key, path, default):
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(path, "must be a number >= 0, got %r" % (value,))
    return value


def _list(data, key):
    value = data.get(key)
    if value is None:
        raise ConfigError(key, "is required (an array)")
    if not isinstance(value, list):
        raise ConfigError(key, "must be an array")
    return value


def _int(data, key, path, default, minimum=None, maximum=None):
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, float) and value == int(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, "must be an integer, got %r" % (value,))
    if minimum is not None and value < minimum:
        raise ConfigError(path, "must be >= %d, got %d" % (minimum, value))
    if maximum is not None and value > maximum:
        raise ConfigError(path, "must be <= %d, got %d" % (maximum, value))
    return value


def _sorted_by(items, attr):
    return sorted(items, key=lambda x: getattr(x, attr))
