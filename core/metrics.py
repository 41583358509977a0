"""A small metrics registry with Prometheus text exposition (format 0.0.4).

Counters and histograms are updated on the hot path (a dict lookup and an add); gauges are
filled by collectors that run at scrape time, so nothing is kept up to date that nobody reads.
Series are rendered sorted, so the output does not depend on dict order (MicroPython's is not
insertion order).
"""

COUNTER = "counter"
GAUGE = "gauge"
HISTOGRAM = "histogram"

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


def _escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_value(v):
    if isinstance(v, float):
        if v != v:
            return "NaN"
        if v in (float("inf"), float("-inf")):
            return "+Inf" if v > 0 else "-Inf"
        if v == int(v) and abs(v) < 1e15:
            return str(int(v))
        return repr(v)
    return str(v)


class Metric:
    __slots__ = ("name", "kind", "help", "labelnames", "values", "buckets")

    def __init__(self, name, kind, help_text, labelnames=(), buckets=None):
        self.name = name
        self.kind = kind
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self.values = {}  # label values tuple -> number, or [bucket counts..., sum, count]
        self.buckets = tuple(buckets) if buckets else None

    def inc(self, labels=(), amount=1):
        self.values[labels] = self.values.get(labels, 0) + amount

    def set(self, labels, value):
        self.values[labels] = value

    def observe(self, labels, value):
        state = self.values.get(labels)
        if state is None:
            state = self.values[labels] = [0] * (len(self.buckets) + 2)
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                state[i] += 1
                break
        state[-2] += value
        state[-1] += 1

    def get(self, labels=()):
        return self.values.get(labels, 0)

    def clear(self):
        """Forget all series (a collector refilling gauges drops those that no longer exist)."""
        self.values = {}

    def _labels(self, values, extra=None):
        pairs = ['%s="%s"' % (n, _escape(v)) for n, v in zip(self.labelnames, values)]
        if extra:
            pairs.append(extra)
        return "{" + ",".join(pairs) + "}" if pairs else ""

    def render(self, out):
        out.append("# HELP %s %s" % (self.name, self.help))
        out.append("# TYPE %s %s" % (self.name, self.kind))
        for labels in sorted(self.values):
            value = self.values[labels]
            if self.kind != HISTOGRAM:
                out.append("%s%s %s" % (self.name, self._labels(labels), _format_value(value)))
                continue
            cumulative = 0
            for i, bound in enumerate(self.buckets):
                cumulative += value[i]
                out.append('%s_bucket%s %d' % (self.name, self._labels(labels, 'le="%s"' % _format_value(float(bound))), cumulative))
            out.append('%s_bucket%s %d' % (self.name, self._labels(labels, 'le="+Inf"'), value[-1]))
            out.append("%s_sum%s %s" % (self.name, self._labels(labels), _format_value(float(value[-2]))))
            out.append("%s_count%s %d" % (self.name, self._labels(labels), value[-1]))


class MetricsRegistry:
    def __init__(self):
        self._metrics = {}
        self._collectors = []

    def _register(self, name, kind, help_text, labelnames, buckets=None):
        metric = self._metrics.get(name)
        if metric is None:
            metric = self._metrics[name] = Metric(name, kind, help_text, labelnames, buckets)
        elif metric.kind != kind or metric.labelnames != tuple(labelnames):
            raise ValueError("metric %s already registered with another type or labels" % name)
        return metric

    def counter(self, name, help_text, labelnames=()):
        return self._register(name, COUNTER, help_text, labelnames)

    def gauge(self, name, help_text, labelnames=()):
        return self._register(name, GAUGE, help_text, labelnames)

    def histogram(self, name, help_text, labelnames=(), buckets=DEFAULT_BUCKETS):
        return self._register(name, HISTOGRAM, help_text, labelnames, buckets)

    def add_collector(self, collect):
        """`collect()` runs before every render, typically to set gauges from live state."""
        self._collectors.append(collect)

    def get(self, name):
        return self._metrics.get(name)

    def render(self):
        for collect in self._collectors:
            collect()
        out = []
        for name in sorted(self._metrics):
            self._metrics[name].render(out)
        return "\n".join(out) + "\n"


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
