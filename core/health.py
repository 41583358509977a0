"""Health status from pool success rates, consumer liveness and warnings (router spec §8.2).
A pure function of its inputs.

  DEGRADED  an unacknowledged CRITICAL warning; or every pool with enough data is unhealthy;
            or every consumer is stalled; or more than `max_warnings_for_warning` active warnings
  WARNING   any unhealthy pool or stalled consumer, or more than `max_warnings_for_healthy`
  HEALTHY   otherwise

A pool is unhealthy when its success rate over the recent window is below `healthy_rate` and it
has at least `min_samples` outcomes there (one failed message must not flip a quiet pool).
"""

HEALTHY = "HEALTHY"
WARNING = "WARNING"
DEGRADED = "DEGRADED"


class HealthSettings:
    __slots__ = ("healthy_rate", "min_samples", "stall_seconds", "max_warnings_for_healthy", "max_warnings_for_warning")

    def __init__(self, healthy_rate=0.90, min_samples=10, stall_seconds=60.0, max_warnings_for_healthy=5, max_warnings_for_warning=20):
        self.healthy_rate = healthy_rate
        self.min_samples = min_samples
        self.stall_seconds = stall_seconds
        self.max_warnings_for_healthy = max_warnings_for_healthy
        self.max_warnings_for_warning = max_warnings_for_warning


def health_report(pools, consumers, active_warnings, settings=None):
    """`pools`: list of (code, success_rate, samples); `consumers`: list of (id, stalled);
    `active_warnings`: the active Warning objects. Returns the report as a dict."""
    s = HealthSettings() if settings is None else settings
    issues = []
    pools_healthy = pools_unhealthy = 0
    for code, rate, samples in pools:
        if samples >= s.min_samples and rate < s.healthy_rate:
            pools_unhealthy += 1
            issues.append("Pool %s success rate: %.1f%%" % (code, rate * 100))
        else:
            pools_healthy += 1
    consumers_unhealthy = 0
    for consumer_id, stalled in consumers:
        if stalled:
            consumers_unhealthy += 1
            issues.append("Consumer %s is stalled" % consumer_id)
    consumers_healthy = len(consumers) - consumers_unhealthy
    critical = sum(1 for w in active_warnings if w.severity == "CRITICAL")
    if critical:
        issues.append("%d critical warnings" % critical)
    active = len(active_warnings)

    if (
        critical
        or (pools_unhealthy and not pools_healthy)
        or (consumers and consumers_unhealthy == len(consumers))
        or active > s.max_warnings_for_warning
    ):
        status = DEGRADED
    elif pools_unhealthy or consumers_unhealthy or active > s.max_warnings_for_healthy:
        status = WARNING
    else:
        status = HEALTHY
    if active > s.max_warnings_for_healthy:
        issues.append("%d active warnings" % active)
    return {
        "status": status,
        "pools_healthy": pools_healthy,
        "pools_unhealthy": pools_unhealthy,
        "consumers_healthy": consumers_healthy,
        "consumers_unhealthy": consumers_unhealthy,
        "active_warnings": active,
        "critical_warnings": critical,
        "issues": issues,
    }
