"""One JSON shim for the whole engine: `ujson` where it exists (built into MicroPython, a fast C
extension on CPython), the standard `json` otherwise.

`dumps` is always compact (no spaces) and keeps non-ASCII characters as they are, so the bytes
we sign are the bytes we send and match the other FlowCatalyst implementations.
"""

try:
    import ujson as _json
except ImportError:  # CPython without the edge extra
    import json as _json

import sys

if sys.implementation.name == "micropython":

    def dumps(obj):
        return _json.dumps(obj, separators=(",", ":"))

elif _json.__name__ == "ujson":

    def dumps(obj):
        return _json.dumps(obj, ensure_ascii=False, escape_forward_slashes=False)

else:

    def dumps(obj):
        return _json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def loads(data):
    """Parse JSON text or UTF-8 bytes; raises ValueError on anything malformed."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data).decode()
    return _json.loads(data)
