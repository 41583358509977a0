"""Active/standby through a lease in Redis (router spec §8.1's leadership monitor, done for
real: RS's `/monitoring/standby-status` was a stub, §14 #16).

Theory of operation. Every instance runs one loop. The lock is one Redis key (`key`, default
`fc:router:leader`) whose value is the holder's instance id and which expires `ttl` seconds
after it was last set or renewed.

- A standby tries to take the lock every `heartbeat` seconds with `SET key id NX PX ttl`, and
  also just after the holder's lease would run out (it reads the key's PTTL), so it takes over
  at most one TTL after the leader's last renewal.
- The holder renews every `heartbeat` seconds with a compare-and-set (a Lua script that
  extends the key only while its value is still this instance's id).
- A holder that cannot renew stops polling BEFORE its lease can have expired: when
  `ttl - heartbeat` seconds have passed since the last renewal that succeeded (timed from
  before the command was sent, so Redis's expiry is never earlier), or at once when the key
  turns out to be gone or someone else's. Redis calls are bounded by `wait_for`, so a Redis
  that hangs cannot hold the loop past that deadline; failed renewals are retried every
  `heartbeat / 4` until then. Since the new holder can only take the key after it expired, two
  instances never poll at once as long as this process is not frozen for a heartbeat (a
  stopped VM, a blocked event loop) and the key is not lost inside Redis.
- A key lost inside Redis (a restart without persistence, a flush, a failover to a replica
  that missed the write) is covered as far as this instance can see it: a standby that takes
  the lock while the lease it last saw on another holder should still run waits until that
  lease would have ended before it polls (the old holder steps down at its next renewal,
  within one heartbeat). A leader that stops cleanly (`stop()`) pauses polling, then deletes
  the key and leaves a marker (`<key>:released`) so the standby takes over at once (a holder
  stopped during such a wait leaves none).
- Redis errors never end the loop: they are logged, shown in `status()` and added to the
  router's warnings once per outage.

`on_leader()` / `on_follower()` are awaited in the loop, one at a time: the server's router
resumes / pauses polling in them. `status()` gives the fields of `/monitoring/standby-status`.
"""

import asyncio
import time

from flowcatalyst.core import warnings as w
from flowcatalyst.core.compat import wall_time
from flowcatalyst.core.log import logger
from flowcatalyst.core.timefmt import iso_utc_ms

_log = logger("standby")

PRIMARY = "PRIMARY"
STANDBY = "STANDBY"

# -> {state, holder, pttl ms, released-by}; state 1: taken, 2: already ours (taken back), 0: held by another
ACQUIRE = """
local ttl = tonumber(ARGV[2])
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ttl) then
  return {1, ARGV[1], ttl, redis.call('GET', KEYS[2]) or ''}
end
local holder = redis.call('GET', KEYS[1]) or ''
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {2, holder, ttl, ''}
end
return {0, holder, redis.call('PTTL', KEYS[1]), ''}
"""

# -> 1 when renewed, else {0, holder}
RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 1
end
return {0, holder or ''}
"""

# ARGV[3] "1": leave the marker that tells a standby this holder stopped polling (not left by a
# holder still waiting out a hold-off: the instance it waited for may still poll)
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if ARGV[3] == '1' then
    redis.call('SET', KEYS[2], ARGV[1], 'PX', tonumber(ARGV[2]))
  end
  return 1
end
return 0
"""


class Standby:
    def __init__(
        self,
        redis_url,
        key="fc:router:leader",
        ttl=30.0,
        heartbeat=10.0,
        instance_id=None,
        on_leader=None,
        on_follower=None,
        warnings=None,
        clock=time.monotonic,
    ):
        if heartbeat <= 0 or ttl <= 0 or heartbeat * 2 > ttl:
            raise ValueError("the heartbeat (%ss) must be positive and at most half the lock TTL (%ss)" % (heartbeat, ttl))
        if not instance_id:
            raise ValueError("an instance id is needed")
        self.redis_url = redis_url
        self.key = key
        self.released_key = key + ":released"
        self.ttl = float(ttl)
        self.heartbeat = float(heartbeat)
        self.instance_id = instance_id
        self.on_leader = on_leader
        self.on_follower = on_follower
        self.warnings = warnings
        self.clock = clock
        self.op_timeout = min(self.heartbeat / 2, 5.0)  # one Redis call
        self.retry_interval = self.heartbeat / 4  # a leader whose renewal failed retries this often
        self._redis = None
        self._task = None
        self._stopping = False
        self.held = False  # this instance holds the lock (as of the last answer from Redis)
        self.active = False  # on_leader was called, on_follower not since: polling
        self._lease_from = None  # monotonic time the last successful take/renewal was sent
        self._hold_off_until = 0.0  # a new holder polls from then on (see the module's doc)
        self.holder = None  # the holder Redis named last
        self._other = None  # (holder, monotonic end of its lease as seen) of another instance
        self.redis_available = None  # None until the first answer or failure
        self._last_refresh = None  # wall time of the last successful Redis call
        self.last_error = None
        self.transitions = 0  # times this instance became leader
        self._lost_at = None  # monotonic time this instance last stepped down

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self):
        """Connect and start the loop; returns at once (the first attempt runs in the loop).
        A Redis that is down at start is a warning, not an error: the instance stays standby."""
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self._redis = Redis.from_url(
            self.redis_url,
            socket_timeout=self.op_timeout,
            socket_connect_timeout=self.op_timeout,
            retry=Retry(NoBackoff(), 0),  # the loop retries, on its own schedule
            decode_responses=True,
        )
        self._acquire = self._redis.register_script(ACQUIRE)
        self._renew = self._redis.register_script(RENEW)
        self._release = self._redis.register_script(RELEASE)
        _log.info("standby started", instanceId=self.instance_id, key=self.key, ttl=self.ttl, heartbeat=self.heartbeat)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self):
        """Stop the loop; a leader pauses polling first, then gives the lock up (so that a
        standby takes over at once)."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except BaseException:  # CancelledError, or what the loop died of
                pass
        polled = self.active or self._hold_off_until <= self.clock()
        if self.active:
            await self._become_follower("stopping")
        if self.held and self._redis is not None:
            try:
                args = [self.instance_id, int(self.ttl * 1000), "1" if polled else "0"]
                await asyncio.wait_for(self._release(keys=[self.key, self.released_key], args=args), self.op_timeout)
                _log.info("standby lock released", instanceId=self.instance_id)
            except Exception as e:
                _log.warn("standby lock not released: it expires by itself", error=_describe(e))
            self.held = False
        if self._redis is not None:
            try:
                await self._redis.aclose()
            except Exception:  # closing a broken connection must not fail the stop
                pass
            self._redis = None

    # -- the loop -------------------------------------------------------------------------------

    async def _run(self):
        while not self._stopping:
            try:
                delay = await (self._leader_tick() if self.held else self._follower_tick())
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the loop never dies: report and go on
                _log.error("standby loop error", error=repr(e))
                delay = self.retry_interval
            if delay > 0:
                await asyncio.sleep(delay)

    async def _follower_tick(self):
        sent = self.clock()
        try:
            state, holder, pttl, released_by = await asyncio.wait_for(
                self._acquire(keys=[self.key, self.released_key], args=[self.instance_id, int(self.ttl * 1000)]),
                self.op_timeout,
            )
        except Exception as e:
            self._redis_failed(e)
            return self.heartbeat
        now = self._redis_answered()
        self.holder = holder or None
        if state == 0:
            pttl = int(pttl)
            seconds = pttl / 1000.0 if pttl > 0 else self.ttl  # -1: a key without expiry (set by hand)
            if holder:
                self._other = (holder, now + seconds)
            # try again at the next heartbeat, or right after this lease would end
            return min(self.heartbeat, seconds + 0.01) if pttl > 0 else self.heartbeat
        self.held = True
        self._lease_from = sent
        self.holder = self.instance_id
        self._hold_off_until = 0.0
        if state == 2:
            if self._lost_at is not None and now - self._lost_at < self.ttl:
                _log.info("standby lock still ours after stepping down: taken back", instanceId=self.instance_id)
            else:
                _log.warn("standby lock already held under this instance id: taken back (FC_INSTANCE_ID must differ between instances)", instanceId=self.instance_id)
        elif self._other is not None and self._other[1] > now:
            previous, until = self._other
            if released_by == previous:
                _log.info("standby lock released by %s: taking over at once" % previous)
            else:
                self._hold_off_until = until
                _log.warn(
                    "standby lock vanished before %s's lease could expire (Redis restarted or lost the key?): waiting until it would have" % previous,
                    seconds=round(until - now, 3),
                )
        self._other = None
        _log.info("standby lock acquired", instanceId=self.instance_id)
        return await self._maybe_activate()

    async def _leader_tick(self):
        deadline = self._lease_from + self.ttl - self.heartbeat  # stop polling by then without a renewal
        sent = self.clock()
        if sent >= deadline:
            await self._lose("no renewal for %.1fs (Redis unreachable: %s)" % (sent - self._lease_from, self.last_error))
            return 0
        try:
            result = await asyncio.wait_for(
                self._renew(keys=[self.key], args=[self.instance_id, int(self.ttl * 1000)]),
                min(self.op_timeout, deadline - sent),
            )
        except Exception as e:
            self._redis_failed(e)
            now = self.clock()
            if now >= deadline:
                await self._lose("no renewal for %.1fs (Redis unreachable: %s)" % (now - self._lease_from, self.last_error))
                return 0
            return min(self.retry_interval, deadline - now)
        self._redis_answered()
        if result == 1:
            self._lease_from = sent
            return await self._maybe_activate()
        holder = result[1] if isinstance(result, list) and len(result) > 1 else ""
        self.holder = holder or None
        await self._lose("the lock is %s" % ("held by %s" % holder if holder else "gone (expired or deleted)"))
        return 0  # try to take it again right away: it may simply have been deleted

    async def _maybe_activate(self):
        """After a take or a renewal: start polling unless a hold-off runs; the next delay."""
        now = self.clock()
        if not self.active:
            if now < self._hold_off_until:
                return min(self.heartbeat, self._hold_off_until - now)
            await self._become_leader()
        return self.heartbeat

    async def _lose(self, why):
        was_active = self.active
        self.held = False
        self._lost_at = self.clock()
        self._hold_off_until = 0.0
        if was_active:
            _log.error("standby: lost the lock, polling stops", reason=why, instanceId=self.instance_id)
            self._warn("ERROR", "Instance %s stopped polling: %s" % (self.instance_id, why))
            await self._become_follower(why)
        else:
            _log.warn("standby: lost the lock before polling", reason=why)

    async def _become_leader(self):
        self.active = True
        self.transitions += 1
        _log.info("standby: this instance is now the leader and polls", instanceId=self.instance_id)
        if self.on_leader is not None:
            try:
                await self.on_leader()
            except Exception as e:
                _log.error("standby: on_leader failed", error=repr(e))

    async def _become_follower(self, why):
        if self.on_follower is not None:
            try:
                await self.on_follower()
            except Exception as e:
                _log.error("standby: on_follower failed", error=repr(e))
        self.active = False
        _log.info("standby: this instance is standby and does not poll", instanceId=self.instance_id, reason=why)

    # -- Redis health ---------------------------------------------------------------------------

    def _redis_answered(self):
        if self.redis_available is False:
            _log.info("standby: Redis reachable again")
        self.redis_available = True
        self.last_error = None
        self._last_refresh = wall_time()
        return self.clock()

    def _redis_failed(self, error):
        self.last_error = _describe(error)
        if self.redis_available is not False:
            _log.warn("standby: Redis unreachable", url=_redact(self.redis_url), error=self.last_error)
            self._warn("WARN", "Standby lock: Redis unreachable (%s)%s" % (self.last_error, "; polling stops if it is not back in time" if self.active else ""))
        self.redis_available = False

    def _warn(self, severity, message):
        if self.warnings is not None:
            self.warnings.add(w.CONSUMER_HEALTH, severity, message, "Standby")

    # -- reporting ------------------------------------------------------------------------------

    @property
    def role(self):
        return PRIMARY if self.active else STANDBY

    def status(self):
        """The fields of `GET /monitoring/standby-status` (router spec §9.2), with real values."""
        return {
            "standbyEnabled": True,
            "instanceId": self.instance_id,
            "role": self.role,
            "redisAvailable": bool(self.redis_available),
            "currentLockHolder": self.holder,
            "lastSuccessfulRefresh": iso_utc_ms(self._last_refresh) if self._last_refresh else None,
            "hasWarning": self.redis_available is False,
        }


def _describe(error):
    if isinstance(error, asyncio.TimeoutError):
        return "no answer in time"
    text = str(error)
    return text if text else type(error).__name__


def _redact(url):
    """A Redis URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return url
    user = creds.partition(":")[0]
    return "%s%s%s:***@%s" % (scheme, sep, user, host)
