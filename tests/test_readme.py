"""The README's core example must run as written (pointed at a loopback target)."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_core_example_delivers_a_signed_payload(target, tmp_path):
    readme = open(os.path.join(ROOT, "README.md")).read()
    example = python_blocks(readme)[0]
    assert "https://example.com/hooks/orders" in example
    script = tmp_path / "example.py"
    script.write_text(example.replace("https://example.com/hooks/orders", target.url("/hooks/orders")))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30, env=dict(os.environ, FC_LOG_LEVEL="WARN"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "ACCEPTED"
    assert "'acked': 1" in proc.stdout
    got = target.received("/hooks/orders")
    assert len(got) == 1 and got[0].json() == {"order": 42, "status": "paid"}

    from flowcatalyst.core import verify

    h = got[0].headers
    assert verify("s3cr3t", got[0].body, h["x-flowcatalyst-signature"], h["x-flowcatalyst-timestamp"])
