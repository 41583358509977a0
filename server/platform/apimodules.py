"""The platform's route modules, each a `register(api, platform)` with a module-level SCHEMAS
dict: app.py registers them (in this order), openapi.py describes their schemas."""

from . import (
    api_audit,
    api_config,
    api_connections,
    api_dispatch,
    api_events,
    api_eventtypes,
    api_jobs,
    api_pools,
    api_subscriptions,
)

API_MODULES = (
    api_eventtypes,
    api_subscriptions,
    api_pools,
    api_connections,
    api_events,
    api_jobs,
    api_audit,
    api_config,
    api_dispatch,
)
