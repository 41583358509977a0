"""A split deployment, end to end: the platform with its stream processor and scheduler in one
process publishing pointers to a real SQS FIFO queue (moto) or NATS JetStream, and a
standalone router (`fc-server router`'s app) configured from the platform's
`/api/config/router`, consuming them and calling the platform back."""

import asyncio
import uuid

import httpx

from flowcatalyst.core import signing
from flowcatalyst.server.app import RouterServerApp
from flowcatalyst.server.settings import RouterServerSettings
from tests.server.test_nats import nats_url  # noqa: F401 - the module's fixture, reused
from tests.support.edgeapp import EdgeRunner, eventually
from tests.support.platform import PlatformRunner, jobs_of, publish, subscribe


def run_split(tmp_path, queue_uri, target):
    with PlatformRunner(
        tmp_path, None, router_enabled=False, dispatch_queue=queue_uri, scheduler_poll_interval=0.05
    ) as platform:
        config = httpx.get(platform.url("/api/config/router")).json()
        assert config["queues"][0]["queueUri"] == queue_uri
        with EdgeRunner(
            tmp_path,
            name="router",
            app_class=RouterServerApp,
            settings_class=RouterServerSettings,
            config_urls=platform.url("/api/config/router"),
        ):
            sub = subscribe(platform, target.url("/ok"), signingSecret="split-secret")
            publish(
                platform,
                {"data": {"n": 1}, "messageGroup": "g"},
                {"data": {"n": 2}, "messageGroup": "g"},
            )
            eventually(
                lambda: [j["status"] for j in jobs_of(platform, sub["id"])] == ["COMPLETED"] * 2,
                timeout=30,
                what="both jobs delivered through the queue and the standalone router",
            )
        requests = target.received("/ok")
        assert sorted(r.json()["n"] for r in requests) == [1, 2]
        h = requests[0].headers
        assert signing.verify(
            "split-secret",
            requests[0].body,
            h["x-flowcatalyst-signature"],
            h["x-flowcatalyst-timestamp"],
        )


def test_split_deployment_on_sqs(tmp_path, sqs, target):
    run_split(tmp_path, sqs.create_queue("dispatch", fifo=True), target)


def test_split_deployment_on_nats(tmp_path, nats_url, target):  # noqa: F811
    name = "FCSPLIT%s" % uuid.uuid4().hex[:8].upper()
    uri = "%s?stream=%s&consumer=router&subject=%s.>" % (nats_url, name, name.lower())
    try:
        run_split(tmp_path, uri, target)
    finally:
        asyncio.run(delete_stream(nats_url, name))


async def delete_stream(url, name):
    import nats

    nc = await nats.connect(url)
    try:
        await nc.jetstream().delete_stream(name)
    except Exception:  # never created: nothing to remove
        pass
    finally:
        await nc.close()
