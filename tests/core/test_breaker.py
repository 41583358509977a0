from flowcatalyst.core import BreakerRegistry, BreakerSettings, CircuitBreaker
from flowcatalyst.core.breaker import CLOSED, HALF_OPEN, OPEN


def breaker(**kw):
    return CircuitBreaker("http://t/", BreakerSettings(**kw))


def test_stays_closed_below_minimum_calls():
    b = breaker()
    for _ in range(9):
        b.record_failure(0.0)
    assert b.state == CLOSED and b.allow_request(0.0)


def test_opens_at_the_failure_rate_threshold():
    b = breaker()
    for _ in range(5):
        b.record_success(0.0)
    for _ in range(4):
        b.record_failure(0.0)
    assert b.state == CLOSED  # 4/9: not enough calls
    b.record_failure(1.0)
    assert b.state == OPEN  # 5/10 = 0.5
    assert not b.allow_request(2.0)
    assert b.rejected_calls == 1


def test_does_not_open_below_the_threshold():
    b = breaker()
    for _ in range(6):
        b.record_success(0.0)
    for _ in range(4):
        b.record_failure(0.0)
    assert b.state == CLOSED and b.failure_rate == 0.4


def test_half_open_after_reset_timeout_then_closes_after_three_successes():
    b = breaker(reset_timeout=5.0)
    for _ in range(10):
        b.record_failure(100.0)
    assert b.state == OPEN
    assert not b.allow_request(104.9)
    assert b.allow_request(105.0)
    assert b.state == HALF_OPEN
    assert b.allow_request(105.1)  # probes are not limited
    b.record_success(106)
    b.record_success(106)
    assert b.state == HALF_OPEN
    b.record_success(106)
    assert b.state == CLOSED
    assert b.stats()["bufferedCalls"] == 0


def test_half_open_failure_reopens():
    b = breaker(reset_timeout=1.0)
    for _ in range(10):
        b.record_failure(0.0)
    assert b.allow_request(1.0) and b.state == HALF_OPEN
    b.record_success(1.0)
    b.record_failure(1.5)
    assert b.state == OPEN
    assert not b.allow_request(2.0)
    assert b.allow_request(2.5)


def test_window_slides():
    b = breaker(window_size=10, min_calls=10)
    for _ in range(10):
        b.record_success(0)
    for _ in range(4):
        b.record_failure(0)
    assert b.failure_rate == 0.4 and b.state == CLOSED
    b.record_failure(0)
    assert b.state == OPEN


def test_record_none_records_nothing_and_reset_keeps_counters():
    b = breaker()
    b.record(None, 0)
    assert b.stats()["bufferedCalls"] == 0
    for _ in range(10):
        b.record(False, 0)
    b.reset()
    s = b.stats()
    assert s["state"] == CLOSED and s["failedCalls"] == 10 and s["bufferedCalls"] == 0


def test_stats_shape():
    b = breaker()
    b.record_success(0)
    b.record_failure(0)
    assert b.stats() == {
        "name": "http://t/",
        "state": "CLOSED",
        "successfulCalls": 1,
        "failedCalls": 1,
        "rejectedCalls": 0,
        "failureRate": 50.0,
        "bufferedCalls": 2,
        "bufferSize": 100,
    }


def test_registry_shares_one_breaker_per_target_and_evicts_idle():
    now = [0.0]
    reg = BreakerRegistry(clock=lambda: now[0], idle_timeout=3600)
    a = reg.get("http://a/")
    assert reg.get("http://a/") is a
    reg.get("http://b/")
    for _ in range(10):
        a.record_failure(0)
    assert reg.open_count() == 1
    now[0] = 3000.0
    reg.get("http://b/").allow_request(3000.0)
    now[0] = 3700.0
    assert reg.evict_idle() == 1
    assert reg.find("http://a/") is None and reg.find("http://b/") is not None
    assert reg.reset("http://b/") and not reg.reset("http://nope/")
    assert set(reg.stats()) == {"http://b/"}
