"""The least memory an edge-like program can hold: the standard library the edge runs on
(asyncio, which brings ssl and with it libcrypto; SQLite; json; hashlib/hmac) and a listening
socket, and nothing of FlowCatalyst. tools/bench/binaries.py measures its idle RSS under
`python -I -S` and compiled by Nuitka with fc-edge's own options: what is left of fc-edge's
idle RSS above it is FlowCatalyst's."""

import asyncio
import hashlib  # noqa: F401  (the edge signs webhooks and checks tokens)
import hmac  # noqa: F401
import json  # noqa: F401
import sqlite3
import sys


async def idle(db_path):
    db = sqlite3.connect(db_path)
    db.execute("PRAGMA journal_mode=WAL")
    server = await asyncio.start_server(lambda reader, writer: writer.close(), "127.0.0.1", 0)
    async with server:
        await asyncio.sleep(3600)


def main():
    asyncio.run(idle(sys.argv[1] if len(sys.argv) > 1 else ":memory:"))


if __name__ == "__main__":
    main()
