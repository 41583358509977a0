"""Who is calling, and what they may do (spec/platform.md §3.1).

A principal comes from a verified JWT (auth.py), a static service token, or, with
FC_AUTH=none, is the developer on loopback. Scope ANCHOR sees and may do everything (as GO).
Others act on the clients they list (`"*"`: every client, but still not anchor-level things)
with permissions `platform:{context}:{aggregate}:{action}`, granted directly
(`permissions` claim) or through the built-in roles below; a granted permission may use `*`
for any one segment.
"""

from .errors import forbidden

ANCHOR = "ANCHOR"
PARTNER = "PARTNER"
CLIENT = "CLIENT"
SCOPES = (ANCHOR, PARTNER, CLIENT)

ROLES = {
    "platform:super-admin": ("*:*:*:*",),
    "platform:messaging-admin": (
        "platform:messaging:*:*",
        "platform:admin:batch:audit-logs-write",
        "platform:admin:audit-log:view",
    ),
    "platform:messaging-viewer": (
        "platform:messaging:*:view",
        "platform:messaging:*:view-raw",
        "platform:admin:audit-log:view",
    ),
    "platform:publisher": (
        "platform:messaging:batch:events-write",
        "platform:messaging:batch:dispatch-jobs-write",
        "platform:admin:batch:audit-logs-write",
        "platform:application-service:event:create",
    ),
}


def _matches(granted, wanted):
    g = granted.split(":")
    w = wanted.split(":")
    return len(g) == len(w) and all(a == "*" or a == b for a, b in zip(g, w, strict=True))


class Principal:
    def __init__(
        self,
        id,
        type="USER",
        scope=CLIENT,
        clients=(),
        permissions=(),
        roles=(),
        name=None,
        email=None,
        via="jwt",
    ):
        self.id = id
        self.type = type
        self.scope = scope if scope in SCOPES else CLIENT
        self.clients = tuple(clients or ())
        self.roles = tuple(roles or ())
        granted = list(permissions or ())
        for role in self.roles:
            granted.extend(ROLES.get(role, ()))
        self.permissions = tuple(granted)
        self.name = name
        self.email = email
        self.via = via  # jwt | service-token | none

    @property
    def is_anchor(self):
        return self.scope == ANCHOR

    def has(self, permission):
        return self.is_anchor or any(_matches(g, permission) for g in self.permissions)

    def require(self, *permissions):
        """Go on if any of `permissions` is granted, else 403."""
        if not any(self.has(p) for p in permissions):
            raise forbidden("%s lacks the permission %s" % (self.id, " or ".join(permissions)))

    def can_access(self, client_id):
        """May act on `client_id`'s things (None: anchor level, anchors only)."""
        if self.is_anchor:
            return True
        if client_id is None:
            return False
        return "*" in self.clients or client_id in self.clients

    def require_client(self, client_id):
        if not self.can_access(client_id):
            if client_id is None:
                raise forbidden("only anchor principals act at anchor level (without a clientId)")
            raise forbidden("%s has no access to client %s" % (self.id, client_id))

    def default_client(self, client_id):
        """The client a write acts on (spec §3.1 tenant defaulting): the one given, or for a
        non-anchor its first client; 403 when not accessible."""
        if client_id is None and not self.is_anchor:
            own = [c for c in self.clients if c != "*"]
            client_id = own[0] if own else None
        self.require_client(client_id)
        return client_id

    def client_clause(self, column="client_id"):
        """(SQL, params) that limits a list to what this principal may see, to append after a
        WHERE: nothing for anchors; rows of any client for `"*"`; else its clients (none
        when it has none)."""
        if self.is_anchor:
            return "", []
        if "*" in self.clients:
            return " AND %s IS NOT NULL" % column, []
        own = [c for c in self.clients if c != "*"]
        if not own:
            return " AND 1 = 0", []
        return " AND %s IN (%s)" % (column, ",".join("?" * len(own))), own

    def __repr__(self):
        return "Principal(%r, %s)" % (self.id, self.scope)


DEVELOPER = Principal(
    "developer", type="USER", scope=ANCHOR, name="developer (FC_AUTH=none)", via="none"
)
