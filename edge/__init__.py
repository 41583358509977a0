"""FlowCatalyst edge edition: the core engine with a durable SQLite queue and an HTTP API."""
