"""FlowCatalyst server edition: SQS, NATS, the platform API, scheduler and processors."""
