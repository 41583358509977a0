"""The platform-specific parts of the native binaries (tools/build.py, docs/binaries.md), run
on every platform of the CI matrix (.github/workflows/ci.yml): stopping a service the way a
service manager does, where a onefile binary unpacks, and that the botocore data the server
binary keeps is enough for an SQS client."""

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import build  # noqa: E402


def test_a_service_stops_cleanly_when_asked_the_platforms_way(tmp_path):
    """SIGTERM on Linux and macOS, Ctrl-Break on Windows (edge/cli.py stop_on_signals): the
    edge stops its router and exits 0, which is what the binaries' smoke test expects too."""
    port = build.free_port()
    cmd = [
        sys.executable,
        "-m",
        "flowcatalyst.edge",
        "--port",
        str(port),
        "--db",
        str(tmp_path / "e.db"),
    ]
    proc, _ = build.start_service(
        cmd, str(tmp_path), build.service_env(tmp_path), port, str(tmp_path / "log")
    )
    try:
        build.deliver_edge("http://127.0.0.1:%d" % port)
    finally:
        status = build.stop_service(proc)
    log = (tmp_path / "log").read_text()
    assert status == 0, log
    assert proc.returncode == 0


@pytest.mark.skipif(sys.platform == "win32", reason="XDG_CACHE_HOME and HOME: Linux and macOS")
def test_onefile_cache_dir_on_posix(tmp_path):
    version = "fc-edge-" + build.VERSION
    env = {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    assert build.onefile_cache_dir("fc-edge", env) == tmp_path / "xdg" / "flowcatalyst" / version
    # a relative XDG_CACHE_HOME is ignored, as the XDG spec says
    env["XDG_CACHE_HOME"] = "relative/cache"
    assert (
        build.onefile_cache_dir("fc-edge", env)
        == tmp_path / "home" / ".cache" / "flowcatalyst" / version
    )
    del env["XDG_CACHE_HOME"]
    assert (
        build.onefile_cache_dir("fc-edge", env)
        == tmp_path / "home" / ".cache" / "flowcatalyst" / version
    )


@pytest.mark.skipif(sys.platform != "win32", reason="Local AppData: Windows")
def test_onefile_cache_dir_on_windows():
    expected = Path(os.environ["LOCALAPPDATA"]) / "flowcatalyst" / ("fc-server-" + build.VERSION)
    assert build.onefile_cache_dir("fc-server") == expected


def test_onefile_builds_unpack_to_one_folder_per_version():
    """The spec that keeps the cache from growing, and the options its {VERSION} needs."""
    edition = build.EDITIONS["edge"]
    cmd = build.nuitka_command(edition, "onefile", Path("fc-edge.py"), Path("out"), 1)
    assert "--onefile-tempdir-spec={CACHE_DIR}/flowcatalyst/{PRODUCT}-{VERSION}" in cmd
    assert "--product-name=fc-edge" in cmd and "--product-version=" + build.VERSION in cmd
    assert "--include-module=_json" in cmd  # anti-bloat drops it otherwise
    standalone = build.nuitka_command(edition, "standalone", Path("fc-edge.py"), Path("out"), 1)
    assert not any(o.startswith("--onefile") for o in standalone)


def test_the_botocore_data_the_server_binary_keeps_makes_a_working_sqs_client(tmp_path):
    """Only SQS, endpoints and partitions stay; a botocore that sees nothing else still builds
    an SQS client and signs a SendMessage for a real region."""
    pytest.importorskip("botocore")
    import botocore.exceptions
    import botocore.loaders
    import botocore.session

    base = Path(botocore.__file__).parent.parent
    kept = []
    for path in (base / "botocore" / "data").rglob("*"):
        rel = path.relative_to(base).as_posix()
        if path.is_file() and build.botocore_data_kept(rel):
            kept.append(rel)
            target = tmp_path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    services = {rel.split("/")[2] for rel in kept if rel.count("/") > 2}
    assert services == {"sqs"}
    assert {"botocore/data/endpoints.json", "botocore/data/partitions.json"} <= set(kept)

    loader = botocore.loaders.Loader(include_default_search_paths=False)
    loader.search_paths.append(str(tmp_path / "botocore" / "data"))
    session = botocore.session.Session()
    session.register_component("data_loader", loader)
    client = session.create_client(
        "sqs",
        region_name="eu-west-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
    )
    assert client.meta.endpoint_url == "https://sqs.eu-west-1.amazonaws.com"
    with pytest.raises(botocore.exceptions.UnknownServiceError):
        session.create_client("s3", region_name="eu-west-1")
    captured = {}

    def capture(request, **kwargs):
        captured["headers"] = dict(request.headers)
        raise StopSending()

    class StopSending(Exception):
        pass

    client.meta.events.register("before-send.sqs.SendMessage", capture)
    with pytest.raises(StopSending):
        client.send_message(QueueUrl="https://sqs.eu-west-1.amazonaws.com/1/q", MessageBody="{}")
    target = captured["headers"]["X-Amz-Target"]
    assert (target.decode() if isinstance(target, bytes) else target) == "AmazonSQS.SendMessage"
    assert "Authorization" in captured["headers"]


def test_the_https_smoke_step_passes_with_python(tmp_path):
    """check_edge_tls, the smoke test's HTTPS run, against `python -m flowcatalyst.edge`: the
    step itself works, so when it fails on a binary the binary is at fault (it caught a build
    without the idna codec)."""
    pytest.importorskip("cryptography", reason="the smoke test's certificate needs cryptography")
    cmd = [sys.executable, "-m", "flowcatalyst.edge"]
    build.check_edge_tls(cmd, str(tmp_path), build.service_env(tmp_path))


def test_every_c_accelerator_nuitka_leaves_out_is_named():
    """Nuitka's package configuration keeps some C accelerators out of a build ("no-auto-follow",
    "may slow down by using fallback implementation"); the standard-library module then runs
    its pure-Python fallback in the binary only. A server binary without `_datetime` delivered
    ~10 % less than `python -m` at 1,000 msg/s (tools/bench/binaries.py). tools/build.py names
    each one."""
    import importlib.util
    import re

    spec = importlib.util.find_spec("nuitka")
    if spec is None:
        pytest.skip("Nuitka is not installed (the build extra brings it)")
    configs = Path(spec.origin).parent / "plugins" / "standard"
    slow = set()
    for config in configs.glob("*.nuitka-package.config.yml"):
        text = config.read_text(encoding="utf-8")
        slow.update(re.findall(r"'(_\w+)': 'may slow down by using fallback implementation'", text))
    assert slow, "no such entries found in %s: has Nuitka's configuration moved?" % configs
    assert slow <= set(build.C_ACCELERATORS)
