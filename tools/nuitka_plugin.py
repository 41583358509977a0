"""A Nuitka user plugin for tools/build.py (`--user-plugin`), three size decisions:

- With FC_BUILD_STDLIB=imported (tools/build.py sets it for fc-edge), only the standard-library
  modules the program imports go in. In standalone mode Nuitka 4.3 also adds, as bytecode,
  every standard-library module that imports cleanly (its "auto inclusion": calendar, pstats,
  tomllib, xdrlib...), used or not: for fc-edge, 86 modules (1.3 MB of bytecode) that nothing
  imports, beside the 149 that CPython itself needs at start (all encodings among them). They sit in the executable's data segment, which the
  loader walks at start, so they were resident memory too. Nuitka has no option for it; the
  plugin empties its list (ImportDetection._stdlib_modules_names, a module global that Nuitka
  fills once) before Nuitka asks for it. What the program imports, directly or through any
  module it includes, is followed as before.
- Packages named in FC_BUILD_BYTECODE (comma-separated, set by tools/build.py) go into the binary
  as bytecode instead of being compiled to C. Nuitka's C for a module is many times the size of
  its bytecode: compiled, the server's third-party packages (redis, psycopg, botocore, anyio,
  httpx...) made a 64 MB executable. As bytecode they run exactly as under `python -m`, which
  for our own asyncio code is also faster than compiled (tools/build.py, BYTECODE_OWN).
- The shared libraries copied into the standalone folder lose their debug symbols on Linux
  (the interpreter's extension modules come with them: 15 MB of libraries become 11 MB). Not on
  macOS (stripping breaks their code signatures) nor Windows (DLLs carry none).
"""

import os
import shutil
import subprocess
import sys

from nuitka.freezer import ImportDetection
from nuitka.plugins.PluginBase import NuitkaPluginBase


class FlowCatalystBuild(NuitkaPluginBase):
    plugin_name = "flowcatalyst-build"
    plugin_desc = (
        "No unused standard library; bytecode for the named packages; stripped shared libraries."
    )

    def __init__(self):
        if os.environ.get("FC_BUILD_STDLIB") == "imported":
            # A Nuitka without this module global would include the whole standard library
            # again, silently: stop instead (pyproject.toml pins the Nuitka it was written for).
            if getattr(ImportDetection, "_stdlib_modules_names", False) is not None:
                self.sysexit("Nuitka's standard-library auto inclusion moved: see %s" % __file__)
            ImportDetection._stdlib_modules_names = ()
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
