"""The httpx transport (server/httpxtransport.py) against real servers on loopback: it must
behave like the core client on the transport port (status, lower-case headers, body, final URL,
redirects, timeouts and connect errors as TransportError kinds, the body cap), and do what the
core client does not: HTTP/2 (checked on a real HTTP/2 server, Hypercorn, which records the
version each request arrived over), proxies and CA bundles from the environment."""

import asyncio
import socket
import time

import pytest

from flowcatalyst.core import HttpMediator, parse_message
from flowcatalyst.core.classify import ERROR_CONNECTION, ERROR_PROCESS, SUCCESS
from flowcatalyst.core.httpclient import USER_AGENT, TransportError
from flowcatalyst.server.httpxtransport import HttpxResponse, HttpxTransport
from tests.support.h2target import H2Target
from tests.support.ports import free_port

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def no_environment(monkeypatch):
    """Tests start without proxies or a CA file from the environment; the tests about them set
    their own."""
    for name in PROXY_VARIABLES + ("FC_CA_FILE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)


def run(coro, limit=10.0):
    return asyncio.run(asyncio.wait_for(coro, limit))


def with_transport(scenario, **options):
    """`await scenario(transport)` with a new HttpxTransport, closed afterwards."""

    async def main():
        transport = HttpxTransport(**options)
        try:
            return await scenario(transport)
        finally:
            await transport.close()

    return run(main())


def send(url, headers=None, body=b"", timeout=None, method="POST", **options):
    """One request through a new transport: the Response, or the TransportError raised."""

    async def scenario(transport):
        try:
            return await transport.send(method, url, headers or {}, body, timeout)
        except TransportError as e:
            return e

    return with_transport(scenario, **options)


class RawServer:
    """An asyncio server in the test's loop that answers every request with `response` bytes
    (and then, with `stall`, keeps the connection open without a word more)."""

    def __init__(self, response, stall=False):
        self.response = response
        self.stall = stall
        self.server = None

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.server.sockets[0].getsockname()[1], path)

    async def _handle(self, reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            writer.write(self.response)
            await writer.drain()
            if self.stall:
                await asyncio.sleep(30)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


def raw(response, stall=False, **options):
    async def main():
        async with RawServer(response, stall) as server:
            transport = HttpxTransport(**options)
            try:
                return await transport.send("POST", server.url(), {}, b"x", options.get("request_timeout"))
            except TransportError as e:
                return e
            finally:
                await transport.close()

    return run(main())


# -- ordinary exchanges ---------------------------------------------------------------------------


def test_status_headers_body_and_the_request_sent(target):
    target.on("/h", lambda rec: (201, {"X-Custom": "Yes", "Content-Type": "application/json"}, {"ack": True}))
    body = b'{"messageId":"m1"}'
    response = send(target.url("/h?a=1"), {"Content-Type": "application/json", "X-FLOWCATALYST-SIGNATURE": "abc", "X-Name": "caf\u00e9"}, body)
    assert isinstance(response, HttpxResponse)
    assert (response.status, response.reason, response.body, response.url) == (201, "X", b'{"ack": true}', target.url("/h?a=1"))
    assert response.headers["x-custom"] == "Yes" and all(name == name.lower() for name in response.headers)
    assert (response.truncated, response.http_version) == (False, "HTTP/1.1")
    (rec,) = target.received("/h")
    assert (rec.method, rec.body, rec.query) == ("POST", body, {"a": ["1"]})
    assert rec.headers["x-flowcatalyst-signature"] == "abc"
    assert b"X-Name: caf\xc3\xa9\r\n" in rec.head  # UTF-8 bytes on the wire, as the core client sends them
    assert rec.headers["user-agent"] == USER_AGENT


def test_repeated_response_headers_are_joined():
    response = raw(b"HTTP/1.1 200 OK\r\nX-Thing: a\r\nx-thing: b\r\nContent-Length: 2\r\n\r\nok")
    assert response.headers["x-thing"] == "a, b" and response.body == b"ok"


def test_keep_alive_reuses_one_connection(target):
    async def scenario(transport):
        return [(await transport.send("POST", target.url("/ok"), {}, b"")).status for _ in range(5)]

    assert with_transport(scenario) == [200] * 5
    assert target.connections == 1


def test_no_cookies_are_kept_between_requests(target):
    target.on("/cookie", lambda rec: (200, {"Set-Cookie": "session=secret; Path=/"}, b""))

    async def scenario(transport):
        await transport.send("POST", target.url("/cookie"), {}, b"")
        await transport.send("POST", target.url("/ok"), {}, b"")

    with_transport(scenario)
    assert "cookie" not in target.received("/ok")[0].headers


def test_close_then_send_again(target):
    async def scenario(transport):
        first = await transport.send("POST", target.url("/ok"), {}, b"")
        await transport.close()
        await transport.close()  # twice is harmless
        second = await transport.send("POST", target.url("/ok"), {}, b"")
        return first.status, second.status

    assert with_transport(scenario) == (200, 200)
    assert target.connections == 2


# -- redirects ------------------------------------------------------------------------------------


def test_302_after_post_becomes_get_and_is_followed(target):
    response = send(target.url("/redirect/302?to=/ok"), {"Content-Type": "application/json"}, b"{}")
    assert (response.status, response.url) == (200, target.url("/ok"))
    final = target.received("/ok")[0]
    assert (final.method, final.body) == ("GET", b"")


@pytest.mark.parametrize("code", [307, 308])
def test_307_and_308_keep_method_and_body(target, code):
    response = send(target.url("/redirect/%d?to=/ok" % code), {}, b"payload")
    assert response.status == 200
    final = target.received("/ok")[0]
    assert (final.method, final.body) == ("POST", b"payload")


def test_a_chain_of_redirects_is_followed(target):
    response = send(target.url("/redirect/301?to=/redirect/302%3Fto%3D/redirect/307%253Fto%253D/ok"), {}, b"x")
    assert response.status == 200 and response.url == target.url("/ok")


def test_too_many_redirects_is_an_other_error(target):
    target.on("/loop", lambda rec: (302, {"Location": "/loop"}, b""))
    error = send(target.url("/loop"), {}, b"", max_redirects=3)
    assert isinstance(error, TransportError) and error.kind == "other"
    assert len(target.received("/loop")) == 4  # the first request and 3 redirects


def test_authorization_is_dropped_on_a_cross_origin_redirect(target):
    other = "http://localhost:%d/ok" % target.port
    send(target.url("/redirect/307?to=" + other), {"Authorization": "Bearer t"}, b"x")
    (first,) = target.received("/redirect/307")
    (second,) = target.received("/ok")
    assert first.headers["authorization"] == "Bearer t"
    assert "authorization" not in second.headers


# -- failures -------------------------------------------------------------------------------------


def test_a_slow_target_times_out_and_the_transport_stays_usable(target):
    async def scenario(transport):
        started = time.monotonic()
        with pytest.raises(TransportError) as info:
            await transport.send("POST", target.url("/slow/3000"), {}, b"", 0.2)
        elapsed = time.monotonic() - started
        after = await transport.send("POST", target.url("/ok"), {}, b"", 2.0)
        return info.value, elapsed, after

    error, elapsed, after = with_transport(scenario)
    assert error.kind == "timeout" and "0.2" in error.detail
    assert elapsed < 2.5  # it gave up long before the target answered
    assert after.status == 200


def test_the_request_timeout_default_comes_from_the_transport(target):
    error = send(target.url("/slow/3000"), request_timeout=0.2)
    assert isinstance(error, TransportError) and error.kind == "timeout"


def test_a_body_that_stalls_times_out():
    error = raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", stall=True, request_timeout=0.3)
    assert isinstance(error, TransportError) and error.kind == "timeout"


def test_connection_refused_is_a_connect_error():
    error = send("http://127.0.0.1:%d/x" % free_port())
    assert isinstance(error, TransportError) and error.kind == "connect"


def test_an_unresolvable_host_is_a_connect_error():
    error = send("http://no-such-host.invalid/x", connect_timeout=2.0)
    assert isinstance(error, TransportError) and error.kind == "connect"


def test_a_connect_timeout_is_a_connect_error_as_in_the_core_client():
    """A listening socket whose accept queue is full drops new SYNs, so connecting hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(s)
        time.sleep(0.05)
        error = send("http://127.0.0.1:%d/x" % port, timeout=5.0, connect_timeout=0.3)
    finally:
        for s in fillers:
            s.close()
        listener.close()
    assert isinstance(error, TransportError)
    assert error.kind == "connect" and "timed out" in error.detail


def test_an_invalid_url_is_an_other_error():
    for url in ("ftp://127.0.0.1/x", "http://", "not a url"):
        error = send(url)
        assert isinstance(error, TransportError) and error.kind == "other", url


def test_a_malformed_response_is_an_other_error():
    error = raw(b"garbage\r\n\r\n")
    assert isinstance(error, TransportError) and error.kind == "other"


# -- the body cap ---------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_truncated(target):
    target.on("/big", lambda rec: (200, {}, b"x" * 5000))
    response = send(target.url("/big"), max_response_bytes=1000)
    assert (len(response.body), response.truncated) == (1000, True)


def test_a_body_exactly_at_the_limit_is_whole(target):
    target.on("/exact", lambda rec: (200, {}, b"y" * 1000))
    response = send(target.url("/exact"), max_response_bytes=1000)
    assert (response.body, response.truncated) == (b"y" * 1000, False)


def test_a_chunked_body_over_the_limit_is_truncated():
    chunks = b"".join(b"%x\r\n%s\r\n" % (100, b"z" * 100) for _ in range(20)) + b"0\r\n\r\n"
    response = raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks, max_response_bytes=250)
    assert (response.body, response.truncated) == (b"z" * 250, True)


# -- TLS and proxies from the environment ----------------------------------------------------------


def test_https_trusts_the_ca_file_from_FC_CA_FILE(tls_files, monkeypatch):
    with H2Target(*tls_files) as server:
        error = send(server.url("/ok"))
        assert isinstance(error, TransportError) and error.kind == "connect" and "certificate" in error.detail.lower()
        monkeypatch.setenv("FC_CA_FILE", tls_files[0])
        assert send(server.url("/ok")).status == 200


def test_https_without_verification(tls_files):
    with H2Target(*tls_files) as server:
        response = send(server.url("/ok"), verify=False)
        assert (response.status, response.body) == (200, b'{"ack": true}')


def test_https_trusts_SSL_CERT_FILE(tls_files, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", tls_files[0])
    with H2Target(*tls_files) as server:
        assert send(server.url("/ok")).status == 200


def test_a_proxy_from_the_environment_is_used_and_NO_PROXY_bypasses_it(target, monkeypatch):
    """The target plays the proxy: a request through a proxy carries the absolute URL in its
    request line."""
    monkeypatch.setenv("HTTP_PROXY", target.url(""))
    response = send("http://flowcatalyst.invalid/ok", {}, b"x")
    assert response.status == 200
    (rec,) = target.received("/ok")
    assert rec.head.startswith(b"POST http://flowcatalyst.invalid/ok HTTP/1.1\r\n")
    target.reset()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:%d" % free_port())  # nothing there
    assert send(target.url("/ok")).status == 200
    assert target.received("/ok")[0].head.startswith(b"POST /ok HTTP/1.1\r\n")


def test_an_explicit_proxy_wins_and_trust_env_false_ignores_the_environment(target, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:%d" % free_port())  # nothing there
    assert send("http://flowcatalyst.invalid/ok", proxy=target.url("")).status == 200
    assert send(target.url("/ok"), trust_env=False).status == 200
    error = send(target.url("/ok"))
    assert isinstance(error, TransportError) and error.kind == "connect"  # the proxy is not there


# -- HTTP/2 ---------------------------------------------------------------------------------------


def test_http2_really_is_http2(tls_files):
    with H2Target(*tls_files) as server:

        async def scenario(transport):
            return await asyncio.gather(*(transport.send("POST", server.url("/ok"), {"Content-Type": "application/json"}, b'{"messageId":"m%d"}' % i) for i in range(20)))

        responses = with_transport(scenario, http2=True, ca_file=tls_files[0])
        assert {(r.status, r.http_version) for r in responses} == {(200, "HTTP/2")}
        received = server.received("/ok")
        assert len(received) == 20
        assert {r.http_version for r in received} == {"2"}  # what the server saw
        assert sorted(r.body for r in received) == sorted(b'{"messageId":"m%d"}' % i for i in range(20))


def test_http2_streams_share_one_connection(tls_files):
    """20 concurrent requests of one transport travel as streams of one HTTP/2 connection."""
    ports = []

    async def handler(scope, receive, send):
        ports.append(scope["client"][1])
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.05)  # keep the streams concurrent
        await send({"type": "http.response.body", "body": b""})

    with H2Target(*tls_files, handler=handler) as server:

        async def scenario(transport):
            return await asyncio.gather(*(transport.send("POST", server.url("/x"), {}, b"") for _ in range(20)))

        responses = with_transport(scenario, http2=True, ca_file=tls_files[0])
    assert [r.status for r in responses] == [200] * 20
    assert len(ports) == 20 and len(set(ports)) == 1


def test_an_http2_timeout_leaves_the_connection_usable(tls_files):
    """Requests that time out are cancelled inside httpx; the connection they shared with
    requests that succeed goes on serving them, also after the late answers arrive."""
    ports = []

    async def handler(scope, receive, send):
        ports.append(scope["client"][1])
        while (await receive()).get("more_body"):
            pass
        if scope["path"] == "/slow":
            await asyncio.sleep(0.6)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def scenario(transport):
        async def one(path, timeout):
            try:
                return (await transport.send("POST", server.url(path), {}, b"x", timeout)).status
            except TransportError as e:
                return e.kind

        first = await asyncio.gather(*[one("/slow", 0.2) for _ in range(5)], *[one("/ok", 5) for _ in range(5)])
        second = await asyncio.gather(*[one("/ok", 5) for _ in range(5)])
        await asyncio.sleep(0.8)  # the slow answers arrive for streams nobody waits for
        third = await asyncio.gather(*[one("/ok", 5) for _ in range(5)])
        return first, second, third

    with H2Target(*tls_files, handler=handler) as server:
        first, second, third = with_transport(scenario, http2=True, ca_file=tls_files[0])
    assert first == ["timeout"] * 5 + [200] * 5
    assert second == third == [200] * 5
    assert len(ports) == 20 and len(set(ports)) == 1  # all on one connection


def test_without_http2_the_same_server_gets_http11(tls_files):
    with H2Target(*tls_files) as server:
        response = send(server.url("/ok"), ca_file=tls_files[0])
        assert response.http_version == "HTTP/1.1"
        assert [r.http_version for r in server.received()] == ["1.1"]


# -- behind the mediator --------------------------------------------------------------------------


def test_the_mediator_classifies_httpx_results_like_the_core_clients(target, tls_files):
    def outcome(url, **options):
        message = parse_message({"id": "m1", "mediationType": "HTTP", "mediationTarget": url})

        async def main():
            mediator = HttpMediator(HttpxTransport(**options), max_attempts=1)
            try:
                return await mediator.mediate(message)
            finally:
                await mediator.close()

        return run(main())

    assert outcome(target.url("/ok")).result == SUCCESS
    assert outcome(target.url("/status/500")).result == ERROR_PROCESS
    failed = outcome("http://127.0.0.1:%d/x" % free_port())
    assert failed.result == ERROR_CONNECTION and failed.message.startswith("Connection error")
    slow = outcome(target.url("/slow/2000"), request_timeout=0.2)
    assert slow.result == ERROR_CONNECTION and slow.message == "Request timeout"
    with H2Target(*tls_files) as server:
        assert outcome(server.url("/ok"), http2=True, ca_file=tls_files[0]).result == SUCCESS
        assert server.received()[0].body == b'{"messageId":"m1"}'
