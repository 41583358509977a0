"""Versioned schema migrations: `migrations/NNNN_name.sql`, applied in order at start, each
once, recorded in `fc_schema_migrations` with a checksum. One file serves both databases:
`{TS}`, `{JSON}`, `{BOOL}`, `{TRUE}`, `{FALSE}` and `{ID}` stand for the types that differ.
Statements end with `;` at the end of a line.

All of it runs in one transaction, so a failed migration leaves nothing half done; on
PostgreSQL an advisory lock makes processes that start together wait for the first one.
A database that has a migration this program does not know, or whose recorded checksum
differs from the file, is refused: it belongs to another version.
"""

import hashlib
import os
import re

from .. import clock
from .base import StoreError

DIRECTORY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "migrations")
FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

TYPES = {
    "sqlite": {
        "TS": "TEXT",
        "JSON": "TEXT",
        "BOOL": "INTEGER",
        "TRUE": "1",
        "FALSE": "0",
        "ID": "INTEGER PRIMARY KEY AUTOINCREMENT",
    },
    "postgres": {
        "TS": "TIMESTAMPTZ",
        "JSON": "JSONB",
        "BOOL": "BOOLEAN",
        "TRUE": "TRUE",
        "FALSE": "FALSE",
        "ID": "BIGSERIAL PRIMARY KEY",
    },
}

TRACKER = """CREATE TABLE IF NOT EXISTS fc_schema_migrations (
    version INTEGER PRIMARY KEY,
    name VARCHAR(200) NOT NULL,
    checksum VARCHAR(64) NOT NULL,
    applied_at {TS} NOT NULL
)"""


def available(directory=DIRECTORY):
    """(version, name, text) of every migration file, in version order."""
    found = []
    for entry in sorted(os.listdir(directory)):
        match = FILE_NAME.match(entry)
        if match:
            with open(os.path.join(directory, entry), encoding="utf-8") as f:
                found.append((int(match.group(1)), match.group(2), f.read()))
    return found


def render(text, dialect):
    types = TYPES[dialect]
    return re.sub(r"\{(TS|JSON|BOOL|TRUE|FALSE|ID)\}", lambda m: types[m.group(1)], text)


def statements(text):
    """The statements of a migration file, comments removed."""
    lines = [line for line in text.splitlines() if not line.strip().startswith("--")]
    body = "\n".join(line.split(" --")[0].rstrip() for line in lines)
    return [s.strip() for s in re.split(r";\s*$", body, flags=re.MULTILINE) if s.strip()]


def checksum(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


async def migrate(store, directory=DIRECTORY):
    """Apply what is missing; the versions applied now (empty: the schema was up to date)."""
    files = available(directory)

    async def unit(tx):
        if hasattr(tx, "lock"):
            await tx.lock("fc_schema_migrations")
        await tx.execute(render(TRACKER, tx.dialect))
        applied = {
            row["version"]: row
            for row in await tx.fetchall("SELECT version, name, checksum FROM fc_schema_migrations")
        }
        known = {version for version, _, _ in files}
        newer = sorted(v for v in applied if v not in known)
        if newer:
            raise StoreError(
                "the database has schema migration %d (%s), which this program does not know: it was written by a newer version"
                % (newer[-1], applied[newer[-1]]["name"])
            )
        done = []
        for version, name, text in files:
            if version in applied:
                if applied[version]["checksum"] != checksum(text):
                    raise StoreError(
                        "migration %04d_%s.sql differs from the one applied to this database"
                        % (version, name)
                    )
                continue
            for statement in statements(render(text, tx.dialect)):
                await tx.execute(statement)
            await tx.execute(
                "INSERT INTO fc_schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)",
                (version, name, checksum(text), clock.now()),
            )
            done.append(version)
        return done

    return await store.write(unit)
