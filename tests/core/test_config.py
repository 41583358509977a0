import pytest

from flowcatalyst.core import (
    ConfigError,
    PoolConfig,
    QueueConfig,
    RouterConfig,
    parse_router_config,
)

SPEC_EXAMPLE = {
    "processingPools": [
        {"code": "DEFAULT-POOL", "concurrency": 10, "rateLimitPerMinute": None},
        {"code": "high-volume-emails", "concurrency": 50, "rateLimitPerMinute": 6000},
    ],
    "queues": [
        {
            "queueName": "fc-default.fifo",
            "queueUri": "https://sqs.eu-west-1.amazonaws.com/123456789/fc-default.fifo",
            "connections": 2,
            "visibilityTimeout": 900,
        }
    ],
    "connections": 1,
}


def test_spec_example_parses():
    c = parse_router_config(SPEC_EXAMPLE)
    assert [p.code for p in c.pools] == ["DEFAULT-POOL", "high-volume-emails"]
    assert c.pools[1].rate_limit_per_minute == 6000
    q = c.queues[0]
    assert (q.name, q.connections, q.visibility_timeout) == ("fc-default.fifo", 2, 900)
    assert parse_router_config(c.to_dict()) == c


def test_defaults_and_legacy_keys():
    c = parse_router_config({"processingPools": [{"code": "P"}], "queues": [{"uri": "memory://a"}, {"name": "b", "uri": "memory://b"}]})
    assert c.pools[0].concurrency == 20 and c.pools[0].rate_limit_per_minute is None
    assert c.queues[0].name == "memory://a" and c.queues[0].visibility_timeout == 120
    assert c.queues[1].name == "b"


@pytest.mark.parametrize("concurrency, rpm, effective", [(5, None, 5), (0, None, 1), (0, 600, 10), (0, 30, 1), (3, 6000, 3)])
def test_effective_concurrency(concurrency, rpm, effective):
    assert PoolConfig("P", concurrency, rpm).effective_concurrency == effective


def test_zero_rate_limit_means_unlimited():
    assert PoolConfig("P", 5, 0).rate_limit_per_minute is None


@pytest.mark.parametrize(
    "data, path",
    [
        ([], ""),
        ({"queues": []}, "processingPools"),
        ({"processingPools": {}, "queues": []}, "processingPools"),
        ({"processingPools": [], "queues": None}, "queues"),
        ({"processingPools": ["x"], "queues": []}, "processingPools[0]"),
        ({"processingPools": [{"code": ""}], "queues": []}, "processingPools[0].code"),
        ({"processingPools": [{"code": "A", "concurrency": "ten"}], "queues": []}, "processingPools[0].concurrency"),
        ({"processingPools": [{"code": "A", "concurrency": -1}], "queues": []}, "processingPools[0].concurrency"),
        ({"processingPools": [{"code": "A", "concurrency": True}], "queues": []}, "processingPools[0].concurrency"),
        ({"processingPools": [{"code": "A", "rateLimitPerMinute": 1.5}], "queues": []}, "processingPools[0].rateLimitPerMinute"),
        ({"processingPools": [{"code": "A"}, {"code": "A"}], "queues": []}, "processingPools[1].code"),
        ({"processingPools": [], "queues": [{}]}, "queues[0].queueUri"),
        ({"processingPools": [], "queues": [{"queueUri": "q", "visibilityTimeout": 0}]}, "queues[0].visibilityTimeout"),
        ({"processingPools": [], "queues": [{"queueUri": "q", "visibilityTimeout": 50000}]}, "queues[0].visibilityTimeout"),
        ({"processingPools": [], "queues": [{"queueUri": "q", "connections": 0}]}, "queues[0].connections"),
        ({"processingPools": [], "queues": [{"queueUri": "a", "queueName": "n"}, {"queueUri": "b", "queueName": "n"}]}, "queues[1].queueName"),
    ],
)
def test_errors_carry_the_json_path(data, path):
    with pytest.raises(ConfigError) as e:
        parse_router_config(data)
    assert e.value.path == path


def test_integral_floats_are_accepted():
    assert parse_router_config({"processingPools": [{"code": "A", "concurrency": 4.0}], "queues": []}).pools[0].concurrency == 4


def test_equality_ignores_order_and_sees_changes():
    a = RouterConfig([PoolConfig("A", 1), PoolConfig("B", 2)], [QueueConfig("q1"), QueueConfig("q2")])
    b = RouterConfig([PoolConfig("B", 2), PoolConfig("A", 1)], [QueueConfig("q2"), QueueConfig("q1")])
    assert a == b
    assert a != RouterConfig([PoolConfig("A", 1), PoolConfig("B", 3)], a.queues)
    assert a != RouterConfig(a.pools, [QueueConfig("q1"), QueueConfig("q2", visibility_timeout=5)])
