"""The platform: events, subscriptions, dispatch jobs and their delivery (spec/platform.md).

store/        one store interface over SQLite (embedded default) and PostgreSQL, with
              versioned migrations (migrations/*.sql)
ids, clock    TSIDs and the fixed-width RFC 3339 timestamps every table and response uses
api_*         the /api routes (microdot), registered with their OpenAPI description
stream        fan-out of events to subscriptions, and the two read projections
scheduler     PENDING -> QUEUED, one job in flight per ordered message group
dispatch      POST /api/dispatch/process: the router's callback that delivers a job
app           the server that runs any of these, with or without the router (cli.py)
"""
