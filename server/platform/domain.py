"""What the event-type and subscription APIs share: loading an aggregate for a change (404,
then 403 for a client the caller may not act on), partial updates, the subscription version
that fan-out watches, and the refusal of a field that cannot change."""

from urllib.parse import urlsplit

from .errors import not_found


async def load_for_change(tx, principal, table, what, ident):
    """The row `ident` of `table`, read inside the change's transaction; 404 when missing,
    403 when the caller may not act on its client."""
    row = await tx.fetchone("SELECT * FROM %s WHERE id = ?" % table, (ident,))
    if row is None:
        raise not_found(what, ident)
    principal.require_client(row.get("client_id"))
    return row


async def update_columns(tx, table, ident, changes):
    """`UPDATE table SET column = value, ...` for the (column, value) pairs in `changes`."""
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
