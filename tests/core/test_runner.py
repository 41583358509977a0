import json
import os
import signal
import subprocess
import sys
import time

import pytest

ENV = dict(os.environ, FC_LOG_LEVEL="WARN")


def run_cli(*args, input=None, timeout=30):
    return subprocess.run([sys.executable, "-m", "flowcatalyst.core", *args], input=input, capture_output=True, text=True, timeout=timeout, env=ENV)


def write(tmp_path, config):
    path = tmp_path / "router.json"
    path.write_text(json.dumps(config) if not isinstance(config, str) else config)
    return str(path)


def base_config(**extra):
    config = {"processingPools": [{"code": "P", "concurrency": 4}], "queues": [{"queueName": "main", "queueUri": "memory://main", "waitSeconds": 1}]}
    config.update(extra)
    return config


def test_help():
    p = run_cli("--help")
    assert p.returncode == 0 and "usage: python -m flowcatalyst.core CONFIG.json" in p.stdout and "--until-idle" in p.stdout


def test_usage_errors_exit_2():
    assert run_cli().returncode == 2
    p = run_cli("a.json", "--bogus")
    assert p.returncode == 2 and "unknown option --bogus" in p.stderr


@pytest.mark.parametrize(
    "config, message",
    [
        ("{not json", "is not valid JSON"),
        ({"queues": []}, "config: processingPools: is required"),
        ({"processingPools": [{"code": "P", "concurrency": -2}], "queues": [{"queueUri": "memory://q"}]}, "processingPools[0].concurrency: must be >= 0"),
        ({"processingPools": [], "queues": []}, "at least one queue"),
        ({"processingPools": [], "queues": [{"queueUri": "https://sqs.eu-west-1.amazonaws.com/1/q.fifo"}]}, "queues[0].queueUri: the core runs memory queues only"),
        ({"processingPools": [], "queues": [{"queueUri": "q", "maxReceiveCount": "ten"}]}, "queues[0].maxReceiveCount"),
        ({"processingPools": [], "queues": [{"queueUri": "q"}], "mediator": {"retryDelays": [1, -1]}}, "mediator.retryDelays"),
    ],
)
def test_config_errors_say_what_and_where(tmp_path, config, message):
    p = run_cli(write(tmp_path, config), "--until-idle")
    assert p.returncode == 2
    assert message in p.stderr
    assert "Traceback" not in p.stderr


def test_missing_file(tmp_path):
    p = run_cli(str(tmp_path / "nope.json"))
    assert p.returncode == 2 and "cannot read" in p.stderr


def test_until_idle_delivers_config_and_stdin_messages(tmp_path, target):
    url = target.url("/ok")
    config = base_config(
        queues=[{"queueName": "main", "queueUri": "memory://main", "waitSeconds": 1}, {"queueName": "other", "queueUri": "other"}],
        messages=[{"id": "c%d" % i, "poolCode": "P", "mediationType": "HTTP", "mediationTarget": url} for i in range(3)],
    )
    lines = [
        json.dumps({"id": "s1", "poolCode": "P", "mediationType": "HTTP", "mediationTarget": url}),
        json.dumps({"id": "s2", "queue": "other", "poolCode": "P", "mediationType": "HTTP", "mediationTarget": url}),
        json.dumps({"id": "s1", "poolCode": "P", "mediationType": "HTTP", "mediationTarget": url}),
        "",
        "{broken",
        json.dumps({"id": "s3", "queue": "missing", "mediationType": "HTTP", "mediationTarget": url}),
    ]
    p = run_cli(write(tmp_path, config), "--stdin", "--until-idle", input="\n".join(lines) + "\n")
    summary = json.loads(p.stdout)
    assert summary == {"published": 5, "duplicates": 1, "acked": 5, "nacked": 0, "deferred": 0, "deadLettered": 0, "invalid": 2}
    assert p.returncode == 1
    assert "stdin line 5" in p.stderr and "not JSON" in p.stderr
    assert "stdin line 6" in p.stderr and "no queue named 'missing'" in p.stderr
    assert sorted(r.json()["messageId"] for r in target.received("/ok")) == ["c0", "c1", "c2", "s1", "s2"]


def test_until_idle_exit_0_when_all_delivered(tmp_path, target):
    config = base_config(messages=[{"id": "a", "mediationType": "HTTP", "mediationTarget": target.url("/ok")}])
    p = run_cli(write(tmp_path, config), "--until-idle")
    assert p.returncode == 0 and json.loads(p.stdout)["acked"] == 1


def test_dead_letters_make_exit_1(tmp_path, target):
    config = base_config(
        queues=[{"queueName": "main", "queueUri": "memory://main", "maxReceiveCount": 2, "waitSeconds": 1}],
        messages=[{"id": "a", "mediationType": "HTTP", "mediationTarget": target.url("/ackfalse?delay=0")}],
    )
    p = run_cli(write(tmp_path, config), "--until-idle")
    assert p.returncode == 1 and json.loads(p.stdout)["deadLettered"] == 1
    assert "message dead-lettered" in p.stderr


def test_sigterm_drains_and_exits_0(tmp_path, target):
    config = base_config(messages=[{"id": "slow", "mediationType": "HTTP", "mediationTarget": target.url("/slow/700")}])
    proc = subprocess.Popen([sys.executable, "-m", "flowcatalyst.core", write(tmp_path, config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, FC_LOG_LEVEL="INFO"))
    target.wait_for(1, prefix="/slow/")
    time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "router stopping" in err and "router stopped" in err
    assert "abandoning" not in err  # the delivery in flight finished first
