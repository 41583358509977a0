"""An httpx transport for the core's mediator port: `send(method, url, headers, body, timeout)`
returns a core `Response` or raises the core's `TransportError`, exactly as the core's own
HTTP/1.1 client does (core/httpclient.py), so `HttpMediator` classifies both alike.

Use it for what httpx does and the core client does not: HTTP/2 (ALPN over TLS, `http2=True`),
proxies and TLS set-ups from the standard environment. The core client stays the default: on
the hot path it is many times faster (docs/server.md, "HTTP clients").

One `httpx.AsyncClient` per transport, and the server's router makes one transport per pool
(router spec §4.3: RS production does the same, so that one pool's load cannot use up another
pool's HTTP/2 streams, e.g. an AWS ALB's 128 streams per connection). The client is created on
first use, inside the event loop that uses it.

Behaviour, matching the core client:
- redirects followed (up to `max_redirects`; more is an "other" error: httpx raises where the
  core client returns the last 3xx; both are retried the same way by the mediator);
- `timeout` (else `request_timeout`) bounds the whole exchange, connect to last body byte;
  `connect_timeout` bounds connecting;
- errors: connect failures (refused, DNS, TLS handshake and certificate errors, connect
  timeouts, a proxy refusing the tunnel) are "connect"; read/write/overall timeouts are
  "timeout"; everything else (protocol errors, bad URLs, too many redirects) is "other";
- header names lower-case, repeated headers joined with ", ";
- the body is read up to `max_response_bytes` and then cut (`truncated=True`);
- no cookies are kept between requests (httpx's client would otherwise remember them across
  deliveries to the same host).

Environment (read when the client is created, with `trust_env=True`, the default):
- `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` (and lower-case forms) choose a proxy by the
  target's scheme; `NO_PROXY` lists hosts, domains, IPs and CIDRs that bypass it; `proxy=`
  given here wins over the environment;
- CA certificates: `ca_file=`, else `FC_CA_FILE` (as the core client), else the system trust
  store, where OpenSSL also honours `SSL_CERT_FILE` and `SSL_CERT_DIR`; a system without a
  trust store falls back to certifi's bundle. `verify=False` turns verification off;
  `client_cert=(cert_pem, key_pem)` presents a client certificate (mutual TLS).
"""

import asyncio
import os
import ssl
from http import cookiejar

from flowcatalyst.core.httpclient import USER_AGENT, Response, TransportError

DEFAULT_MAX_KEEPALIVE = 100  # idle connections kept per client (the core keeps 100 per origin)
KEEPALIVE_EXPIRY = 15.0  # seconds an idle connection is kept (as the core client)


class HttpxResponse(Response):
    """A core Response that also says which HTTP version carried it ("HTTP/1.1", "HTTP/2")."""

    __slots__ = ("http_version",)

    def __init__(self, status, reason, headers, body, url, truncated=False, http_version=None):
        Response.__init__(self, status, reason, headers, body, url, truncated)
        self.http_version = http_version


class HttpxTransport:
    def __init__(
        self,
        http2=False,
        connect_timeout=10.0,
        request_timeout=30.0,
        proxy=None,
        verify=True,
        max_response_bytes=1048576,
        ca_file=None,
        client_cert=None,
        max_redirects=10,
        max_connections=None,
        max_keepalive_connections=DEFAULT_MAX_KEEPALIVE,
        keepalive_expiry=KEEPALIVE_EXPIRY,
        trust_env=True,
        user_agent=USER_AGENT,
    ):
        """`max_connections` None: as many as the pool's concurrency asks for (a pool never has
        more requests in flight than its concurrency, and a limit here would make a resized
        pool wait inside httpx)."""
        self.http2 = http2
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.proxy = proxy
        self.verify = verify
        self.max_response_bytes = max_response_bytes
        self.ca_file = ca_file or os.environ.get("FC_CA_FILE") or None
        self.client_cert = client_cert
        self.max_redirects = max_redirects
        self.max_connections = max_connections
        self.max_keepalive_connections = max_keepalive_connections
        self.keepalive_expiry = keepalive_expiry
        self.trust_env = trust_env
        self.user_agent = user_agent
        self._client = None

    # -- the port -------------------------------------------------------------------------------

    async def send(self, method, url, headers=None, body=b"", timeout=None):
        import httpx

        timeout = timeout or self.request_timeout
        client = self._client or self._make_client()
        scope = asyncio.timeout(timeout)
        try:
            async with scope:
                request = client.build_request(method, url, headers=_encode_headers(headers), content=body)
                response = await client.send(request, stream=True, follow_redirects=True)
                try:
                    data, truncated = await self._read_capped(response)
                finally:
                    await response.aclose()
        except TimeoutError:
            if scope.expired():
                raise TransportError("timeout", "no response within %ss" % timeout) from None
            raise TransportError("other", "timed out") from None
        except httpx.ConnectTimeout:
            raise TransportError("connect", "connect to %s timed out after %ss" % (_origin(url), self.connect_timeout)) from None
        except httpx.TimeoutException as e:
            raise TransportError("timeout", "no response within %ss (%s)" % (timeout, type(e).__name__)) from None
        except (httpx.ConnectError, httpx.ProxyError) as e:
            raise TransportError("connect", "%s: %s" % (_origin(url), _describe(e))) from None
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as e:
            raise TransportError("other", _describe(e)) from None
        except (OSError, ValueError, UnicodeError, ssl.SSLError) as e:
            raise TransportError("other", _describe(e)) from None
        return HttpxResponse(
            response.status_code,
            response.reason_phrase,
            dict(response.headers.items()),
            data,
            str(response.url),
            truncated,
            response.http_version,
        )

    async def close(self):
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # -- internals ------------------------------------------------------------------------------

    async def _read_capped(self, response):
        limit = self.max_response_bytes
        chunks = []
        total = 0
        async for chunk in response.aiter_bytes():
            if total + len(chunk) > limit:
                chunks.append(chunk[: limit - total])
                return b"".join(chunks), True
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks), False

    def _make_client(self):
        import httpx

        try:
            client = httpx.AsyncClient(
                http2=self.http2,
                verify=self.ssl_context(),
                proxy=self.proxy,
                trust_env=self.trust_env,
                follow_redirects=True,
                max_redirects=self.max_redirects,
                timeout=httpx.Timeout(self.request_timeout, connect=self.connect_timeout),
                limits=httpx.Limits(
                    max_connections=self.max_connections,
                    max_keepalive_connections=self.max_keepalive_connections,
                    keepalive_expiry=self.keepalive_expiry,
                ),
                headers={"User-Agent": self.user_agent},
                cookies=_no_cookies(),
            )
        except ImportError as e:  # http2=True without the h2 package
            raise TransportError("other", "httpx cannot start: %s (install flowcatalyst[server])" % e) from None
        except (OSError, ssl.SSLError, ValueError) as e:  # a CA or client certificate file that cannot be read
            raise TransportError("connect", "TLS set-up failed: %s" % _describe(e)) from None
        self._client = client
        return client

    def ssl_context(self):
        """The TLS context for targets (see the module's doc for where CAs come from)."""
        if isinstance(self.verify, ssl.SSLContext):
            context = self.verify
        elif not self.verify:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif self.ca_file:
            context = ssl.create_default_context(cafile=self.ca_file)
        else:
            context = ssl.create_default_context()  # system store; OpenSSL reads SSL_CERT_FILE/DIR
            if not context.cert_store_stats().get("x509_ca"):
                try:
                    import certifi

                    context.load_verify_locations(cafile=certifi.where())
                except ImportError:
                    pass
        if self.client_cert:
            cert, key = self.client_cert if isinstance(self.client_cert, (tuple, list)) else (self.client_cert, None)
            context.load_cert_chain(cert, key)
        return context


def _encode_headers(headers):
    """Header values as bytes: httpx would encode str values as ASCII and refuse UTF-8 ones,
    which the core client sends as they are."""
    if not headers:
        return None
    return [(_bytes(name), _bytes(value)) for name, value in headers.items()]


def _bytes(text):
    return text.encode() if isinstance(text, str) else text


def _no_cookies():
    return cookiejar.CookieJar(policy=cookiejar.DefaultCookiePolicy(allowed_domains=[]))


def _origin(url):
    scheme, _, rest = url.partition("://")
    return rest.split("/", 1)[0].rpartition("@")[2] or url


def _describe(error):
    text = str(error)
    return text if text else type(error).__name__
