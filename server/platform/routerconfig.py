"""The router's configuration as the platform serves it (router spec §2.3, platform spec
§3.8): every ACTIVE dispatch pool, the default pool (always there), and the dispatch queue.
`GET /api/config/router` answers it; the router inside the server applies it directly.

Pool codes are unique per client, the router's pools per code: a client's pool is named
`CODE@clientId` in the router (anchor-level pools keep their code), and the scheduler stamps
the same name into each message pointer's `poolCode`.
"""

DISPATCH_QUEUE_NAME = "dispatch"


def router_pool_code(code, client_id):
    return code if not client_id else "%s@%s" % (code, client_id)


async def router_config(platform):
    s = platform.settings
    pools = {
        s.default_pool_code: {
            "code": s.default_pool_code,
            "concurrency": s.default_pool_concurrency,
            "rateLimitPerMinute": None,
        }
    }
    rows = await platform.store.fetchall(
        "SELECT code, client_id, concurrency, rate_limit FROM msg_dispatch_pools WHERE status = 'ACTIVE' ORDER BY code, client_id"
    )
    for row in rows:
        code = router_pool_code(row["code"], row["client_id"])
        pools[code] = {
            "code": code,
            "concurrency": row["concurrency"],
            "rateLimitPerMinute": row["rate_limit"],
        }
    return {
        "processingPools": [pools[code] for code in sorted(pools)],
        "queues": [
            {
                "queueName": DISPATCH_QUEUE_NAME,
                "queueUri": s.dispatch_queue,
                "connections": 1,
                "visibilityTimeout": s.dispatch_visibility,
            }
        ],
        "connections": 1,
    }
