"""Benchmark of the server's router: consume from SQS and NATS JetStream, deliver to a sink.

    make bench-server        (or: .venv/bin/python tools/bench/server.py [options])

What it does, in one run:
1. starts the sink (tools/bench/sink.py) and measures its ceiling with wrk;
2. starts tools/bench/sqs_server.py, an SQS-compatible server fast enough not to be the
   bottleneck (moto is not: toolchain.md), and uses the machine's NATS JetStream;
3. for each queue (SQS FIFO, NATS) x transport (core, httpx) x event loop (asyncio, uvloop
   when installed): publishes --messages pointers (IMMEDIATE, to the sink) to a fresh queue,
   starts `python -m flowcatalyst.server router` with a config file naming that queue and one
   pool of --concurrency, and measures messages / (last arrival - first arrival) at the sink;
4. prints the method and a table with each case as a ratio of the sink's ceiling.

Options: --messages N (10000), --concurrency C (100), --wrk-duration S (5), --nats URL
(nats://127.0.0.1:4222), --skip-nats.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from common import Sink, cpu_of, fmt_int, fmt_mb, free_port, loadavg, peak_rss_kb, run_wrk, table

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
POOL = "BENCH"


def pointer(n, sink_url, tag):
    return {"id": "%s-%d" % (tag, n), "poolCode": POOL, "mediationType": "HTTP", "mediationTarget": sink_url, "dispatchMode": "IMMEDIATE"}


class SqsServer:
    def start(self):
        self.proc = subprocess.Popen([sys.executable, str(HERE / "sqs_server.py")], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            raise SystemExit("bench: the SQS server did not start (%r)" % line)
        self.endpoint = "http://127.0.0.1:%d" % int(line.split()[1])
        return self

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def sqs_client(endpoint):
    import botocore.session

    return botocore.session.get_session().create_client(
        "sqs", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench"
    )


def publish_sqs(endpoint, tag, messages, sink_url):
    client = sqs_client(endpoint)
    url = client.create_queue(QueueName="%s.fifo" % tag, Attributes={"FifoQueue": "true"})["QueueUrl"]
    for start in range(0, messages, 10):
        entries = [
            {"Id": str(i), "MessageBody": json.dumps(pointer(start + i, sink_url, tag)), "MessageGroupId": "g%d" % ((start + i) % 100), "MessageDeduplicationId": "%s-%d" % (tag, start + i)}
            for i in range(min(10, messages - start))
        ]
        client.send_message_batch(QueueUrl=url, Entries=entries)
    return url


async def publish_nats(nats_url, tag, messages, sink_url):
    import nats

    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    stream = "BENCH_%s" % tag.replace("-", "_").upper()
    await js.add_stream(name=stream, subjects=["bench.%s.>" % tag], retention="workqueue")
    for n in range(messages):
        await js.publish("bench.%s.m" % tag, json.dumps(pointer(n, sink_url, tag)).encode())
    await nc.close()
    return "nats://%s?stream=%s&consumer=router&subject=bench.%s.>" % (nats_url.split("://", 1)[1], stream, tag)


async def delete_nats_stream(nats_url, uri):
    import nats

    stream = uri.split("stream=", 1)[1].split("&", 1)[0]
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


def sink_count(sink):
    import urllib.request

    with urllib.request.urlopen("http://127.0.0.1:%d/__stats" % sink.port, timeout=10) as r:
        return json.loads(r.read())


def run_case(args, sink, workdir, queue_uri, transport, loop, env_extra):
    d = Path(tempfile.mkdtemp(dir=workdir))
    config = {"processingPools": [{"code": POOL, "concurrency": args.concurrency}], "queues": [{"queueName": "bench", "queueUri": queue_uri, "visibilityTimeout": 300}]}
    (d / "router.json").write_text(json.dumps(config))
    port = free_port()
    env = dict(os.environ, FC_LOG_LEVEL="WARN", FC_HTTP_CLIENT=transport, FC_EVENT_LOOP=loop, **env_extra)
    for name in ("FLOWCATALYST_CONFIG_URL", "FC_CONFIG_FILE"):
        env.pop(name, None)
    import urllib.request

    urllib.request.urlopen("http://127.0.0.1:%d/__stats?reset=1" % sink.port, timeout=10).read()  # arrivals per case
    log = open(d / "router.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "flowcatalyst.server", "router", "--config", str(d / "router.json"), "--port", str(port)], stderr=log, cwd=str(ROOT), env=env)
    deadline = time.monotonic() + 300
    stats = {"requests": 0}
    try:
        while time.monotonic() < deadline and stats["requests"] < args.messages:
            if proc.poll() is not None:
                return {"error": "the router exited (%s); see %s" % (proc.returncode, d / "router.log")}
            time.sleep(0.1)
            stats = sink_count(sink)
        rss, cpu = peak_rss_kb(proc.pid), cpu_of(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    if stats["requests"] < args.messages:
        return {"error": "only %d of %d delivered within 300 s" % (stats["requests"], args.messages)}
    seconds = stats["last"] - stats["first"]
    return {"rate": args.messages / seconds if seconds > 0 else None, "seconds": seconds, "rss_kb": rss, "cpu_s": cpu}


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--wrk-duration", type=int, default=5)
    ap.add_argument("--nats", default=os.environ.get("FC_TEST_NATS_URL", "nats://127.0.0.1:4222"))
    ap.add_argument("--skip-nats", action="store_true")
    return ap.parse_args(argv)


def uvloop_available():
    return subprocess.run([sys.executable, "-c", "import uvloop"], capture_output=True).returncode == 0


def main(argv=None):
    args = parse_args(argv)
    load = loadavg()
    workdir = tempfile.mkdtemp(prefix="fc-server-bench-")
    loops = ["asyncio"] + (["uvloop"] if uvloop_available() else [])
    sink = Sink(latency=True).start()
    sqs = SqsServer().start()
    results = []
    try:
        print("FlowCatalyst server router benchmark\n====================================", flush=True)
        wrk = run_wrk(sink.url, args.concurrency, args.wrk_duration, 1, workdir)
        print("  ran wrk: %s" % (fmt_int(wrk["rps"]) + " req/s" if "rps" in wrk else wrk["error"]), flush=True)
        queues = ["sqs"] + ([] if args.skip_nats else ["nats"])
        for queue in queues:
            for transport in ("core", "httpx"):
                for loop in loops:
                    tag = "b%s" % uuid.uuid4().hex[:8]
                    if queue == "sqs":
                        uri = publish_sqs(sqs.endpoint, tag, args.messages, sink.url)
                        env = {"AWS_ENDPOINT_URL_SQS": sqs.endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}
                    else:
                        uri = asyncio.run(publish_nats(args.nats, tag, args.messages, sink.url))
                        env = {}
                    r = run_case(args, sink, workdir, uri, transport, loop, env)
                    if queue == "nats":
                        asyncio.run(delete_nats_stream(args.nats, uri))
                    r.update(queue=queue, transport=transport, loop=loop)
                    results.append(r)
                    print("  ran %s / %s / %s: %s" % (queue, transport, loop, r.get("error") or fmt_int(r["rate"]) + " msg/s"), flush=True)
    finally:
        sqs.stop()
        sink.stop()
    report(args, wrk, results, load, loops)
    return 0


def report(args, wrk, results, load, loops):
    ceiling = wrk.get("rps")
    print()
    print("Method")
    print("  %s IMMEDIATE pointers are published to a fresh queue first; then a fresh" % fmt_int(args.messages))
    print("  `python -m flowcatalyst.server router` (one pool of concurrency %d, FC_LOG_LEVEL=WARN) consumes" % args.concurrency)
    print("  them and delivers each to the sink; rate = messages / (last arrival - first arrival).")
    print("  SQS: tools/bench/sqs_server.py (the SQS JSON protocol over the core's MemoryQueue; FIFO queue,")
    print("  100 message groups) through the router's botocore adapter. NATS: the machine's JetStream.")
    print("  Transports: the core's asyncio HTTP/1.1 client, or httpx (FC_HTTP_CLIENT=httpx). Event loops:")
    print("  %s." % (", ".join(loops) + ("" if "uvloop" in loops else " (uvloop is not installed: pip install uvloop)")))
    if ceiling:
        print("  Sink ceiling: %s" % wrk["command"])
    print("  Machine: %d CPUs, load average before start %s." % (os.cpu_count() or 0, load))
    print()
    print("Sink ceiling (wrk): %s" % (fmt_int(ceiling) + " req/s" if ceiling else wrk.get("error")))
    print()
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["queue"], r["transport"], r["loop"], "FAILED: " + r["error"], "-", "-", "-"])
            continue
        rows.append(
            [
                r["queue"],
                r["transport"],
                r["loop"],
                fmt_int(r["rate"]),
                "%.0f%%" % (100 * r["cpu_s"] / r["seconds"]) if r.get("cpu_s") and r["seconds"] else "-",
                fmt_mb(r["rss_kb"]),
                "%.3f" % (r["rate"] / ceiling) if ceiling and r["rate"] else "-",
            ]
        )
    print(table(rows, ["queue", "transport", "loop", "msg/s", "CPU", "peak RSS", "x ceiling"]))
    print("  CPU: the router process's CPU time over its whole life / the delivery time (it includes start-up).")


if __name__ == "__main__":
    sys.exit(main())
