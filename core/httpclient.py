"""A small asyncio-streams HTTP/1.1 client: the core's default transport.

It does what webhook delivery needs and no more: keep-alive connections pooled per origin,
connect and request timeouts, Content-Length, chunked and read-to-close bodies (capped),
HTTPS through `ssl`, and redirects (up to `max_redirects`; 303, and 301/302 after a POST, turn
into a GET as browsers and Go do; `Authorization` is dropped when the origin changes). On
CPython it is many times faster than httpx for this pattern; it runs unchanged on MicroPython.

A request that fails on a *reused* connection before any response byte arrives is retried once
on a new connection: the server closed an idle keep-alive connection under us.

Request timeouts are enforced by one watchdog task per client rather than a timer per request
(on CPython that timer was a quarter of the client's cost): it wakes every WATCHDOG_TICK while
requests are in flight and breaks the connection of any request past its deadline, which
wakes the request with a "timeout" error. It exits when nothing is in flight.

Transport port: `await client.send(method, url, headers, body, timeout)` returns a
`Response` or raises `TransportError` whose `kind` is "timeout", "connect" or "other".
"""

import asyncio

from .compat import MICROPYTHON, create_task, getenv, monotonic, running_loop, sleep, with_timeout

REDIRECT_STATUSES = (301, 302, 303, 307, 308)
MAX_HEADER_BYTES = 65536  # also the CPython stream limit that readuntil enforces
_READUNTIL = not MICROPYTHON
WATCHDOG_TICK = 0.05  # seconds: how late a request timeout may fire
USER_AGENT = "flowcatalyst/0.1"


class TransportError(Exception):
    def __init__(self, kind, detail):
        super().__init__("%s: %s" % (kind, detail))
        self.kind = kind
        self.detail = detail


class Response:
    __slots__ = ("status", "reason", "headers", "body", "url", "truncated")

    def __init__(self, status, reason, headers, body, url, truncated=False):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.url = url
        self.truncated = truncated

    def __repr__(self):
        return "<Response %d %s>" % (self.status, self.url)


class _Conn:
    __slots__ = ("reader", "writer", "key", "idle_since", "timed_out")

    def __init__(self, reader, writer, key):
        self.reader = reader
        self.writer = writer
        self.key = key
        self.idle_since = 0.0
        self.timed_out = False

    def abort(self):
        """Break the connection at once, waking whatever waits on it (a request past its
        deadline)."""
        self.timed_out = True
        try:
            if MICROPYTHON:
                self.writer.s.close()
            else:
                self.writer.transport.abort()
        except Exception:  # already broken: nothing left to wake
            pass

    def close(self):
        try:
            self.writer.close()
            if MICROPYTHON:  # there Stream.close() does nothing: wait_closed() closes `s`
                self.writer.s.close()
        except Exception:  # closing a broken socket must never raise into delivery
            pass


class _NoResponse(Exception):
    """The connection failed before any byte of a response arrived."""


def split_url(url):
    """(scheme, host, port, request_target, host_header) of an absolute http(s) URL."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https"):
        raise ValueError("not an http(s) URL: %r" % url)
    rest = rest.split("#", 1)[0]
    cut = len(rest)
    for ch in "/?":
        i = rest.find(ch)
        if 0 <= i < cut:
            cut = i
    authority, target = rest[:cut], rest[cut:]
    if not target:
        target = "/"
    elif target[0] == "?":
        target = "/" + target
    authority = authority.rpartition("@")[2]
    default_port = 443 if scheme == "https" else 80
    if authority.startswith("["):
        end = authority.find("]")
        after = authority[end + 1 :]
        if end < 0 or (after and after[0] != ":"):
            raise ValueError("bad IPv6 address in URL: %r" % url)
        host = authority[1:end]
        port_text = after[1:]
    else:
        host, _, port_text = authority.partition(":")
    if not host:
        raise ValueError("URL has no host: %r" % url)
    port = int(port_text) if port_text else default_port
    if not 0 < port < 65536:
        raise ValueError("port out of range in URL: %r" % url)
    host_header = authority if port_text else (("[%s]" % host) if ":" in host else host)
    return scheme, host, port, target, host_header


def resolve_location(base, location):
    """Absolute URL for a redirect `Location` relative to `base` (RFC 3986 §5.2)."""
    colon = location.find(":")
    if colon > 0 and location[0].isalpha() and all(c.isalpha() or c.isdigit() or c in "+-." for c in location[:colon]):
        return location  # has a scheme of its own
    scheme, host, port, target, host_header = split_url(base)
    if location.startswith("//"):
        return scheme + ":" + location
    location = location.split("#", 1)[0]
    path = target.split("?", 1)[0]
    if not location or location.startswith("?"):
        return "%s://%s%s%s" % (scheme, host_header, path, location or target[len(path) :])
    if not location.startswith("/"):
        location = path.rpartition("/")[0] + "/" + location
    return "%s://%s%s" % (scheme, host_header, _remove_dot_segments(location))


def _remove_dot_segments(reference):
    path, mark, query = reference.partition("?")
    if "/." not in path:
        return reference
    segments = path.split("/")
    out = []
    for segment in segments[1:]:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    if segments[-1] in (".", ".."):
        out.append("")
    return "/" + "/".join(out) + mark + query


class HttpClient:
    def __init__(
        self,
        connect_timeout=10.0,
        request_timeout=30.0,
        max_idle_per_origin=100,
        idle_timeout=15.0,
        max_redirects=10,
        max_response_bytes=1048576,
        ca_file=None,
        verify_tls=True,
        user_agent=USER_AGENT,
    ):
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.max_idle_per_origin = max_idle_per_origin
        self.idle_timeout = idle_timeout
        self.max_redirects = max_redirects
        self.max_response_bytes = max_response_bytes
        self.ca_file = ca_file or getenv("FC_CA_FILE")
        self.verify_tls = verify_tls
        self.user_agent = user_agent
        self._idle = {}
        self._ssl = None
        self._deadlines = {}  # connection in use -> monotonic deadline of its request
        self._urls = {}  # url -> split_url(url): a router sends to few targets, many times
        self._watchdog = None
        self._watchdog_loop = None
        self.connections_opened = 0

    async def send(self, method, url, headers=None, body=b"", timeout=None):
        timeout = timeout or self.request_timeout
        return await self._send(method, url, headers or {}, body, monotonic() + timeout, timeout)

    async def close(self):
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle = {}

    # -- request flow ---------------------------------------------------------------------------

    async def _send(self, method, url, headers, body, deadline, timeout):
        redirects = 0
        origin = None
        while True:
            parts = self._urls.get(url)
            if parts is None:
                try:
                    parts = split_url(url)
                except ValueError as e:
                    raise TransportError("other", str(e))
                if len(self._urls) >= 1024:
                    self._urls = {}
                self._urls[url] = parts
            if origin is not None and parts[:3] != origin:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            origin = parts[:3]
            response = await self._exchange(method, url, parts, headers, body, deadline, timeout)
            location = response.headers.get("location")
            if response.status not in REDIRECT_STATUSES or not location or redirects >= self.max_redirects:
                return response
            redirects += 1
            if (response.status == 303 and method != "HEAD") or (response.status in (301, 302) and method == "POST"):
                method, body = "GET", b""
                headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
            url = resolve_location(url, location)

    async def _exchange(self, method, url, parts, headers, body, deadline, timeout):
        scheme, host, port, target, host_header = parts
        key = (scheme, host, port)
        request = self._encode(method, target, host_header, headers, body)
        conn = self._checkout(key)
        if conn is not None:
            try:
                return await self._roundtrip(conn, request, method, url, deadline, timeout)
            except _NoResponse:
                pass  # the server closed an idle connection under us: retry once on a new one
        conn = await self._connect(key, deadline, timeout)
        try:
            return await self._roundtrip(conn, request, method, url, deadline, timeout)
        except _NoResponse as e:
            # MicroPython reports a refused connection only at the first write or read.
            raise TransportError("connect" if MICROPYTHON else "other", e.args[0])

    def _encode(self, method, target, host_header, headers, body):
        lines = ["%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n" % (method, target, host_header, len(body))]
        has_agent = False
        for name in headers:
            lines.append("%s: %s\r\n" % (name, headers[name]))
            if name.lower() == "user-agent":
                has_agent = True
        if not has_agent:
            lines.append("User-Agent: %s\r\n" % self.user_agent)
        lines.append("\r\n")
        return "".join(lines).encode() + body

    async def _roundtrip(self, conn, request, method, url, deadline, timeout):
        """One request on `conn`, ended by the watchdog at `deadline`; the connection goes back
        to the pool or is closed, whatever happens (including cancellation)."""
        reusable = False
        self._watch(conn, deadline)
        try:
            response, reusable = await self._request_on(conn, request, method, url)
            return response
        except (_NoResponse, TransportError):
            if conn.timed_out:
                raise TransportError("timeout", "no response within %ss" % timeout)
            raise
        finally:
            self._deadlines.pop(conn, None)
            if reusable and not conn.timed_out:
                self._checkin(conn)
            else:
                conn.close()

    async def _request_on(self, conn, request, method, url):
        try:
            conn.writer.write(request)
            await conn.writer.drain()
            head = await _read_head(conn.reader)
        except OSError as e:
            raise _NoResponse(_describe(e))
        except (EOFError, ValueError) as e:
            raise TransportError("other", "bad or incomplete response: %s" % _describe(e))
        if not head:
            raise _NoResponse("connection closed before a response")
        try:
            return await self._read_response(conn, head, method, url)
        except (OSError, EOFError, ValueError) as e:
            raise TransportError("other", "bad or incomplete response: %s" % _describe(e))

    # -- timeouts -------------------------------------------------------------------------------

    def _watch(self, conn, deadline):
        self._deadlines[conn] = deadline
        loop = running_loop()
        if self._watchdog is None or self._watchdog_loop is not loop:  # none yet, or from a finished loop
            self._watchdog_loop = loop
            self._watchdog = create_task(self._watch_deadlines())

    async def _watch_deadlines(self):
        try:
            while self._deadlines:
                await sleep(WATCHDOG_TICK)
                now = monotonic()
                for conn in [c for c, d in self._deadlines.items() if d <= now]:
                    del self._deadlines[conn]
                    conn.abort()
        finally:
            self._watchdog = None

    async def _read_response(self, conn, head, method, url):
        reader = conn.reader
        while True:
            version, status, reason, headers = _parse_head(head)
            if status >= 200 or status == 101:
                break
            head = await _read_head(reader)  # skip 1xx interim responses
            if not head:
                raise EOFError("connection closed after an interim response")
        reusable = version != "HTTP/1.0" or "keep-alive" in headers.get("connection", "").lower()
        if "close" in headers.get("connection", "").lower():
            reusable = False
        truncated = False
        limit = self.max_response_bytes
        if method == "HEAD" or status in (204, 304) or status < 200:
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body, truncated = await _read_chunked(reader, limit)
        elif "content-length" in headers:
            length = int(headers["content-length"])
            if length > limit:
                body, truncated = await reader.readexactly(limit), True
            else:
                body = await reader.readexactly(length)
        else:
            body, truncated = await _read_to_close(reader, limit)
            reusable = False
        if truncated:
            reusable = False
        return Response(status, reason, headers, body, url, truncated), reusable

    # -- connection pool ------------------------------------------------------------------------

    def _checkout(self, key):
        conns = self._idle.get(key)
        now = monotonic()
        while conns:
            conn = conns.pop()
            if now - conn.idle_since < self.idle_timeout:
                return conn
            conn.close()
        return None

    def _checkin(self, conn):
        conns = self._idle.get(conn.key)
        if conns is None:
            conns = self._idle[conn.key] = []
        if len(conns) >= self.max_idle_per_origin:
            conn.close()
            return
        conn.idle_since = monotonic()
        conns.append(conn)

    async def _connect(self, key, deadline, timeout):
        scheme, host, port = key
        limit = min(self.connect_timeout, deadline - monotonic())
        if limit <= 0:
            raise TransportError("timeout", "no response within %ss" % timeout)
        try:
            ssl_context = self._ssl_context() if scheme == "https" else None
            if ssl_context is None:
                opening = asyncio.open_connection(host, port)
            else:
                opening = asyncio.open_connection(host, port, ssl=ssl_context, server_hostname=host)
            reader, writer = await with_timeout(opening, limit)
        except asyncio.TimeoutError:
            if limit < self.connect_timeout:
                raise TransportError("timeout", "no response within %ss" % timeout)
            raise TransportError("connect", "connect to %s:%d timed out after %ss" % (host, port, self.connect_timeout))
        except (OSError, ValueError) as e:
            raise TransportError("connect", "%s:%d: %s" % (host, port, _describe(e)))
        self.connections_opened += 1
        return _Conn(reader, writer, key)

    def _ssl_context(self):
        if self._ssl is None:
            self._ssl = make_ssl_context(self.ca_file, self.verify_tls)
        return self._ssl


def make_ssl_context(ca_file=None, verify=True):
    import ssl

    if not MICROPYTHON:
        context = ssl.create_default_context(cafile=ca_file)
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if not verify:
        context.verify_mode = ssl.CERT_NONE
        return context
    # MicroPython has no system trust store: read one, or refuse rather than not verify.
    path = ca_file or "/etc/ssl/certs/ca-certificates.crt"
    try:
        with open(path, "rb") as f:
            context.load_verify_locations(cadata=f.read())
    except OSError:
        raise TransportError("connect", "TLS needs CA certificates: set ca_file or FC_CA_FILE (%s not readable)" % path)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


async def _read_head(reader):
    """A response's status line and headers, through the blank line, as bytes; b"" when the
    connection closed before the first byte. CPython reads it in one call; MicroPython's
    streams have no readuntil, so there it is read line by line."""
    if _READUNTIL:
        try:
            return await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            if not e.partial:
                return b""
            raise EOFError("connection closed inside the response head")
        except asyncio.LimitOverrunError:
            raise ValueError("response head larger than %d bytes" % MAX_HEADER_BYTES)
    lines = []
    total = 0
    while True:
        line = await reader.readline()
        if not line:
            if not lines:
                return b""
            raise EOFError("connection closed inside the response head")
        total += len(line)
        if total > MAX_HEADER_BYTES:
            raise ValueError("response head larger than %d bytes" % MAX_HEADER_BYTES)
        lines.append(line)
        if line in (b"\r\n", b"\n") and len(lines) > 1:
            return b"".join(lines)


def _parse_head(head):
    """(version, status, reason, headers with lower-case names) of a response head."""
    text = head.decode()
    lines = text.split("\r\n") if "\r\n" in text else text.split("\n")
    parts = lines[0].strip().split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError("malformed status line %r" % lines[0][:80])
    headers = {}
    for line in lines[1:]:
        if not line:
            break
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError("malformed header line %r" % line[:80])
        name = name.strip().lower()
        value = value.strip()
        headers[name] = headers[name] + ", " + value if name in headers else value
    return parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "", headers


async def _read_chunked(reader, limit):
    chunks = []
    size_total = 0
    while True:
        line = await reader.readline()
        if not line:
            raise EOFError("connection closed inside a chunked body")
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while True:  # trailers end with an empty line
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    return b"".join(chunks), False
        if size_total + size > limit:
            chunks.append(await reader.readexactly(limit - size_total))
            return b"".join(chunks), True
        chunks.append(await reader.readexactly(size))
        size_total += size
        await reader.readline()


async def _read_to_close(reader, limit):
    chunks = []
    total = 0
    while True:
        data = await reader.read(min(65536, limit - total + 1))  # one byte more tells truncation
        if not data:
            return b"".join(chunks), False
        if total + len(data) > limit:
            chunks.append(data[: limit - total])
            return b"".join(chunks), True
        chunks.append(data)
        total += len(data)


def _describe(error):
    text = str(error)
    return text if text else type(error).__name__
