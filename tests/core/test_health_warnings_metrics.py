from flowcatalyst.core import WarningService
from flowcatalyst.core.health import DEGRADED, HEALTHY, WARNING, health_report
from flowcatalyst.core.metrics import MetricsRegistry
from flowcatalyst.core.poolmetrics import FAILURE, RATE_LIMITED, SUCCESS, TRANSIENT, PoolMetrics


def warnings_with(n, severity="WARN"):
    ws = WarningService(clock=lambda: 1000.0)
    for i in range(n):
        ws.add("ROUTING", severity, "w%d" % i, "test")
    return ws


def test_health_by_warning_count():
    assert health_report([], [], warnings_with(0).active())["status"] == HEALTHY
    assert health_report([], [], warnings_with(6).active())["status"] == WARNING
    assert health_report([], [], warnings_with(21).active())["status"] == DEGRADED


def test_health_critical_pools_and_consumers():
    assert health_report([], [], warnings_with(1, "CRITICAL").active())["status"] == DEGRADED
    r = health_report([("A", 0.5, 20), ("B", 1.0, 20)], [("q", False)], [])
    assert r["status"] == WARNING and r["pools_unhealthy"] == 1
    assert "Pool A success rate: 50.0%" in r["issues"]
    assert health_report([("A", 0.5, 20)], [], [])["status"] == DEGRADED
    assert health_report([("A", 0.0, 3)], [], [])["status"] == HEALTHY  # too few samples to judge
    r = health_report([], [("q1", True), ("q2", False)], [])
    assert r["status"] == WARNING and "Consumer q1 is stalled" in r["issues"]
    assert health_report([], [("q1", True)], [])["status"] == DEGRADED


def test_warning_service_capacity_ack_and_cleanup():
    now = [0.0]
    ws = WarningService(capacity=10, clock=lambda: now[0])
    ids = [ws.add("ROUTING", "WARN", "m%d" % i, "t").id for i in range(10)]
    ws.add("ROUTING", "ERROR", "m10", "t")
    assert len(ws) == 10 and ws.get(ids[0]) is None  # oldest tenth dropped
    assert ws.list()[0].message == "m10"
    assert [w.message for w in ws.list(severity="ERROR")] == ["m10"]
    assert ws.acknowledge(ids[5]) and not ws.acknowledge("nope")
    assert len(ws.active()) == 9
    assert len(ws.list(acknowledged=False)) == 9
    assert ws.acknowledge_all() == 9
    now[0] = 9 * 3600.0
    ws.add("ROUTING", "INFO", "new", "t")
    assert ws.cleanup() == 9 and len(ws) == 1  # one more was dropped to make room for "new"
    d = ws.list()[0].to_dict()
    assert set(d) == {"id", "category", "severity", "message", "source", "timestamp", "acknowledged", "acknowledgedAt"}


def test_warning_listeners_see_new_warnings():
    seen = []
    ws = WarningService()
    ws.add_listener(seen.append)
    ws.add("ROUTING", "WARN", "x", "t")
    assert [w.message for w in seen] == ["x"]


def test_prometheus_exposition():
    r = MetricsRegistry()
    c = r.counter("fc_x_total", "Things", ("pool",))
    c.inc(("a",))
    c.inc(("a",), 2)
    c.inc(('we"ird\\',))
    g = r.gauge("fc_g", "A gauge")
    r.add_collector(lambda: g.set((), 7))
    h = r.histogram("fc_h_seconds", "Durations", ("pool",), buckets=(0.1, 1.0))
    h.observe(("a",), 0.05)
    h.observe(("a",), 0.5)
    h.observe(("a",), 5)
    text = r.render()
    assert '# TYPE fc_x_total counter' in text
    assert 'fc_x_total{pool="a"} 3' in text
    assert 'fc_x_total{pool="we\\"ird\\\\"} 1' in text
    assert "fc_g 7" in text
    assert 'fc_h_seconds_bucket{pool="a",le="0.1"} 1' in text
    assert 'fc_h_seconds_bucket{pool="a",le="1"} 2' in text
    assert 'fc_h_seconds_bucket{pool="a",le="+Inf"} 3' in text
    assert 'fc_h_seconds_count{pool="a"} 3' in text
    assert 'fc_h_seconds_sum{pool="a"} 5.55' in text


def test_pool_metrics_percentiles_and_windows():
    m = PoolMetrics(max_samples=1000)
    for i in range(1, 101):
        m.record(SUCCESS, float(i), 1000.0)
    m.record(FAILURE, 50.0, 1000.0)
    m.record(RATE_LIMITED, 0.0, 1000.0)
    m.record(TRANSIENT, 50.0, 1000.0)
    pt = m.processing_time()
    assert pt["sampleCount"] == 102 and pt["minMs"] == 1.0 and pt["maxMs"] == 100.0
    assert abs(pt["p50Ms"] - 50) <= 3 and abs(pt["p99Ms"] - 99) <= 3
    assert m.total_success == 100 and m.total_failure == 1 and m.total_rate_limited == 1
    assert abs(m.success_rate - 100 / 101) < 1e-9
    d = m.to_dict(1010.0)
    w = d["last5Min"]
    assert w["successCount"] == 100 and w["failureCount"] == 1 and w["rateLimitedCount"] == 1
    assert w["processingTime"]["p50Ms"] == 50.0
    assert m.window(5, 2000.0)["successCount"] == 0
    rate, judged = m.recent_success(300, 1010.0)
    assert judged == 102 and abs(rate - 100 / 102) < 1e-9


def test_pool_metrics_ring_keeps_the_newest_samples():
    m = PoolMetrics(max_samples=10)
    for i in range(25):
        m.record(SUCCESS, 1.0, float(i))
    assert m.window(1000, 25.0)["successCount"] == 10
    assert m.processing_time()["sampleCount"] == 25
