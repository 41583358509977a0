"""What the aggregate APIs share: loading an aggregate for a change (404, then 403 for a client
the caller may not act on), partial updates, the coded aggregates' create / update / delete
with their audit rows (`Aggregate`), listing, the subscription version that fan-out watches,
and the refusal of a field that cannot change."""

import re
from urllib.parse import urlsplit

from . import audit, clock, ids
from .errors import conflict, not_found, validation
from .routes import query_list, query_str
from .validate import camel


async def load_for_change(tx, principal, table, what, ident):
    """The row `ident` of `table`, read inside the change's transaction; 404 when missing,
    403 when the caller may not act on its client."""
    row = await tx.fetchone("SELECT * FROM %s WHERE id = ?" % table, (ident,))
    if row is None:
        raise not_found(what, ident)
    principal.require_client(row.get("client_id"))
    return row


async def update_columns(tx, table, ident, changes):
    """`UPDATE table SET column = value, ...` for the (column, value) pairs in `changes`
    (names from our code, never from a request)."""
    columns = list(changes)
    sql = "UPDATE %s SET %s WHERE id = ?" % (table, ", ".join("%s = ?" % c for c in columns))
    await tx.execute(sql, [changes[c] for c in columns] + [ident])


async def bump_subscriptions(tx):
    """Every change to a subscription or its bindings moves this counter in the same
    transaction: fan-out reloads its subscriptions as soon as it sees the number move
    (migrations/0001_messaging.sql, fc_versions)."""
    await tx.execute("UPDATE fc_versions SET value = value + 1 WHERE name = 'subscriptions'")


def immutable(body, name, current):
    """400 when the body gives field `name` a value other than its `current` one."""
    present, value = body.raw(name)
    if present and value != current:
        body.fail(name, "cannot be changed (it is %r)" % (current,))


def http_url(body, name, *aliases, required=False, max_length=500):
    """An absolute http:// or https:// URL with a host (a webhook target)."""
    value = body.string(name, *aliases, required=required, max_length=max_length)
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        body.fail(name, "%r is not a URL: %s" % (value, e))
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        body.fail(name, "must be an http:// or https:// URL with a host, got %r" % value)
    if any(ch.isspace() for ch in value):
        body.fail(name, "must not contain white space")
    return value


class Aggregate:
    """A coded aggregate (dispatch pool, connection): unique code per client, typed id, an
    audit row for every change, and no delete while subscriptions use it."""

    def __init__(self, table, what, id_prefix, entity, used_by_column):
        self.table = table
        self.what = what  # "dispatch pool"
        self.id_prefix = id_prefix
        self.entity = entity  # "DispatchPool": the audit entity type and command names
        self.used_by_column = used_by_column  # msg_subscriptions' column that points here
        self.code_name = re.sub(r"(?<!^)([A-Z])", r"_\1", entity).upper()  # DISPATCH_POOL

    async def load(self, db, principal, ident):
        """The row (`db`: the store or a transaction); 404, or 403 for another tenant's."""
        return await load_for_change(db, principal, self.table, self.what, ident)

    async def create(self, tx, principal, code, client_id, settings):
        taken = await tx.fetchone(
            "SELECT id FROM %s WHERE code = ? AND COALESCE(client_id, '') = ?" % self.table,
            (code, client_id or ""),
        )
        if taken is not None:
            raise conflict(
                self.code_name + "_CODE_EXISTS",
                "%s %s already exists for %s (%s)"
                % (self.what, code, client_id or "anchor level", taken["id"]),
            )
        ident = ids.typed(self.id_prefix)
        now = clock.now()
        row = dict(
            settings, id=ident, code=code, client_id=client_id, created_at=now, updated_at=now
        )
        await tx.insert(self.table, tuple(row), [tuple(row.values())])
        details = camel_keys(dict(settings, code=code, client_id=client_id))
        await audit.record(
            tx, principal, self.entity, ident, "Create%sCommand" % self.entity, details, client_id
        )
        return ident

    async def update(self, tx, principal, ident, changes, operation, row=None):
        """Apply `changes` (columns) and write the audit row; the row as it is now."""
        row = row or await self.load(tx, principal, ident)
        await update_columns(tx, self.table, ident, dict(changes, updated_at=clock.now()))
        await audit.record(
            tx, principal, self.entity, ident, operation, camel_keys(changes), row["client_id"]
        )
        return await self.load(tx, principal, ident)

    async def delete(self, tx, principal, ident, hint):
        """Delete it unless subscriptions use it (409 `..._IN_USE`, with `hint`)."""
        row = await self.load(tx, principal, ident)
        used = await tx.fetchone(
            "SELECT COUNT(*) AS n FROM msg_subscriptions WHERE %s = ?" % self.used_by_column,
            (ident,),
        )
        if used["n"]:
            raise conflict(
                self.code_name + "_IN_USE",
                "%s %s is used by %d subscription(s): %s" % (self.what, ident, used["n"], hint),
            )
        await tx.execute("DELETE FROM %s WHERE id = ?" % self.table, (ident,))
        await audit.record(
            tx,
            principal,
            self.entity,
            ident,
            "Delete%sCommand" % self.entity,
            {"code": row["code"]},
            row["client_id"],
        )


async def list_rows(store, req, principal, table, statuses, *exact):
    """The rows of an aggregate `table` the caller may see, by code, filtered by the query's
    `clientId`, `status` (comma-separated, one of `statuses`) and the (query name, column)
    pairs `exact`."""
    sql = "SELECT * FROM %s WHERE 1 = 1" % table
    params = []
    client_id = query_str(req, "clientId")
    if client_id is not None:
        principal.require_client(client_id)
    for name, column in (("clientId", "client_id"),) + exact:
        value = query_str(req, name)
        if value is not None:
            sql += " AND %s = ?" % column
            params.append(value)
    wanted = [s.upper() for s in query_list(req, "status", "statuses")]
    for status in wanted:
        if status not in statuses:
            raise validation(
                "query parameter status: %r is not one of %s" % (status, ", ".join(statuses)),
                field="status",
            )
    if wanted:
        sql += " AND status IN (%s)" % ",".join("?" * len(wanted))
        params.extend(wanted)
    scope, scope_params = principal.client_clause()
    return await store.fetchall(sql + scope + " ORDER BY code, id", (*params, *scope_params))


def camel_keys(columns):
    """Column changes as the API names them (rate_limit -> rateLimit), for the audit trail."""
    return {camel(k): v for k, v in columns.items()}
