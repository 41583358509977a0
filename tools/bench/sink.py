"""A fast HTTP/1.1 sink for the benchmarks: answers every request `200 {"ack":true}`.

An asyncio Protocol server (uvloop's loop when uvloop is importable; it is not a dependency)
with keep-alive and pipelining, reading Content-Length bodies. It prints `PORT <n>` on stdout
once listening and runs until terminated; on SIGTERM/SIGINT it prints `REQUESTS <n>`.

With --latency it also records, for each request whose JSON body carries `"t": <unix time>`
(the edge benchmark puts its publish time there), how long ago that was; `GET /__stats`
answers {"requests" (arrivals, not counting /__stats), "first", "last", "latency_ms":
{"count", "p50", "p99", "max"}} and
`GET /__stats?reset=1` starts the figures afresh.

    python tools/bench/sink.py [--host 127.0.0.1] [--port 0] [--latency]
"""

import argparse
import asyncio
import json
import re
import signal
import sys
import time

BODY = b'{"ack":true}'
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)
CLOSE_RESPONSE = RESPONSE.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)

served = 0
record_latency = False
stats = {"arrivals": 0, "first": None, "last": None, "latencies": []}
T_FIELD = re.compile(rb'"t":\s*([0-9.]+)')


class Sink(asyncio.Protocol):
    __slots__ = ("transport", "buf")

    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""

    def data_received(self, data):
        global served
        buf = self.buf + data if self.buf else data
        out = []
        close = False
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end]
            length = 0
            lower = head.lower()
            i = lower.find(b"\r\ncontent-length:")
            if i >= 0:
                j = lower.find(b"\r\n", i + 2)
                length = int(head[i + 17 : j if j >= 0 else len(head)])
            total = end + 4 + length
            if len(buf) < total:
                break
            if record_latency:
                if lower.startswith(b"get /__stats"):
                    out.append(stats_response(b"reset=1" in lower[:60]))
                    buf = buf[total:]
                    continue
                note_arrival(buf[end + 4 : total])
            buf = buf[total:]
            line_end = lower.find(b"\r\n")
            request_line = lower if line_end < 0 else lower[:line_end]
            if b"\r\nconnection: close" in lower or request_line.endswith(b"http/1.0"):
                close = True
                out.append(CLOSE_RESPONSE)
                break
            out.append(RESPONSE)
        self.buf = buf
        if out:
            served += len(out)
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])
        if close:
            self.transport.close()

    def connection_lost(self, exc):
        self.transport = None


def note_arrival(body):
    now = time.time()
    stats["arrivals"] += 1
    if stats["first"] is None:
        stats["first"] = now
    stats["last"] = now
    m = T_FIELD.search(body)
    if m:
        stats["latencies"].append(now - float(m.group(1)))


def stats_response(reset):
    lat = sorted(stats["latencies"])

    def pick(q):
        return round(lat[min(int(q * len(lat)), len(lat) - 1)] * 1000, 3) if lat else None

    body = json.dumps(
        {
            "requests": stats["arrivals"],
            "first": stats["first"],
            "last": stats["last"],
            "latency_ms": {"count": len(lat), "p50": pick(0.5), "p99": pick(0.99), "max": round(lat[-1] * 1000, 3) if lat else None},
        }
    ).encode()
    if reset:
        stats.update(arrivals=0, first=None, last=None, latencies=[])
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


async def serve(host, port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Sink, host, port, backlog=1024, reuse_address=True)
    print("PORT %d" % server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    print("REQUESTS %d" % served, flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", action="store_true", help="record publish-to-arrival latency (see above)")
    args = ap.parse_args(argv)
    global record_latency
    record_latency = args.latency
    try:
        import uvloop  # optional: not a dependency
    except ImportError:
        uvloop = None
    if uvloop is not None:
        uvloop.run(serve(args.host, args.port))
    else:
        asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
