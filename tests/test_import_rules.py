"""The architecture's import rules (DESIGN.md), checked on the source:
- core imports nothing MicroPython lacks, and nothing outside the core but the stdlib
  subset MicroPython has;
- imports only point down the table: core never imports edge or server; edge never server."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICROPYTHON_LACKS = {"typing", "enum", "dataclasses", "abc", "logging", "hmac", "datetime", "functools", "bisect", "contextlib", "threading"}
# Imported lazily inside an `if not MICROPYTHON` path only.
CPYTHON_ONLY = {("runner.py", "signal")}
MICROPYTHON_HAS = {"asyncio", "binascii", "collections", "hashlib", "heapq", "json", "ujson", "math", "os", "random", "select", "socket", "ssl", "struct", "sys", "time", "array", "gc", "errno", "io", "re"}


def imports_of(folder):
    for name in sorted(os.listdir(os.path.join(ROOT, folder))):
        if not name.endswith(".py"):
            continue
        path = os.path.join(ROOT, folder, name)
        tree = ast.parse(open(path).read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield name, alias.name, 0
            elif isinstance(node, ast.ImportFrom):
                yield name, node.module or "", node.level


def test_core_imports_only_what_micropython_has():
    bad = []
    for module, imported, level in imports_of("core"):
        if level:  # relative: inside the core
            continue
        top = imported.split(".")[0]
        if imported.startswith("flowcatalyst.core") or (module, imported) in CPYTHON_ONLY:
            continue
        if top in MICROPYTHON_LACKS or top not in MICROPYTHON_HAS:
            bad.append("%s imports %s" % (module, imported))
    assert not bad, bad


@pytest.mark.parametrize("folder, forbidden", [("core", ("flowcatalyst.edge", "flowcatalyst.server")), ("edge", ("flowcatalyst.server",))])
def test_imports_point_down(folder, forbidden):
    bad = ["%s imports %s" % (m, i) for m, i, level in imports_of(folder) if i.startswith(forbidden)]
    assert not bad, bad
