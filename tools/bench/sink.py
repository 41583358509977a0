"""A fast HTTP/1.1 sink for the benchmarks: answers every request `200 {"ack":true}`.

An asyncio Protocol server (uvloop's loop when uvloop is importable; it is not a dependency)
with keep-alive and pipelining, reading Content-Length bodies. It prints `PORT <n>` on stdout
once listening and runs until terminated; on SIGTERM/SIGINT it prints `REQUESTS <n>`.

    python tools/bench/sink.py [--host 127.0.0.1] [--port 0]
"""

import argparse
import asyncio
import signal
import sys

BODY = b'{"ack":true}'
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)
CLOSE_RESPONSE = RESPONSE.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)

served = 0


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
    args = ap.parse_args(argv)
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
