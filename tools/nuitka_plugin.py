"""A Nuitka user plugin for tools/build.py (`--user-plugin`), two size decisions:

- Packages named in FC_BUILD_BYTECODE (comma-separated, set by tools/build.py) go into the binary
  as bytecode instead of being compiled to C. Nuitka's C for a module is many times the size of
  its bytecode: compiled, the server's third-party packages (redis, psycopg, botocore, anyio,
  httpx...) made a 64 MB executable. As bytecode they run exactly as under `python -m`.
- The shared libraries copied into the standalone folder lose their debug symbols on Linux
  (the interpreter's extension modules come with them: 15 MB of libraries become 11 MB). Not on
  macOS (stripping breaks their code signatures) nor Windows (DLLs carry none).
"""

import os
import shutil
import subprocess
import sys

from nuitka.plugins.PluginBase import NuitkaPluginBase


class FlowCatalystBuild(NuitkaPluginBase):
    plugin_name = "flowcatalyst-build"
    plugin_desc = "Bytecode for the named packages; stripped shared libraries (Linux)."

    def __init__(self):
        names = os.environ.get("FC_BUILD_BYTECODE", "")
        self.bytecode = tuple(n.strip() for n in names.split(",") if n.strip())

    def decideCompilation(self, module_name):
        # Not the code plugins attach to a module ("anyio-preLoad"): Nuitka 4.3 fails on such a
        # trigger module that is not compiled.
        if "-" in module_name or not self.bytecode:
            return None
        return "bytecode" if module_name.hasOneOfNamespaces(self.bytecode) else None

    def onCopiedDLL(self, dll_filename):
        strip = shutil.which("strip")
        if sys.platform.startswith("linux") and strip:
            subprocess.run([strip, "--strip-unneeded", dll_filename], check=True)
