-- The messaging slice of spec/platform.md §2, for SQLite and PostgreSQL alike:
-- {TS} is a timestamp (TEXT in clock.py's fixed-width form / TIMESTAMPTZ), {JSON} JSON text
-- (TEXT / JSONB), {BOOL} a boolean, {ID} a serial integer key. No partitions: the unique
-- deduplication and idempotency keys below could not be enforced on partitioned tables
-- (spec §2.1), and they are what makes ingest and fan-out idempotent.

CREATE TABLE msg_events (
    id VARCHAR(13) PRIMARY KEY,
    spec_version VARCHAR(20) NOT NULL DEFAULT '1.0',
    type VARCHAR(200) NOT NULL,
    source VARCHAR(500) NOT NULL,
    subject VARCHAR(500),
    time {TS} NOT NULL,
    data {JSON},
    correlation_id VARCHAR(100),
    causation_id VARCHAR(100),
    deduplication_id VARCHAR(200),
    message_group VARCHAR(200),
    client_id VARCHAR(17),
    context_data {JSON},
    created_at {TS} NOT NULL,
    projected_at {TS},
    fanned_out_at {TS}
);
CREATE INDEX idx_msg_events_client_id ON msg_events (client_id);
CREATE INDEX idx_msg_events_created_at ON msg_events (created_at);
CREATE INDEX idx_msg_events_unprojected ON msg_events (created_at) WHERE projected_at IS NULL;
CREATE INDEX idx_msg_events_unfanned ON msg_events (created_at, id) WHERE fanned_out_at IS NULL;
-- one event per deduplication id and tenant (NULL client = anchor level)
CREATE UNIQUE INDEX idx_msg_events_deduplication ON msg_events (COALESCE(client_id, ''), deduplication_id)
    WHERE deduplication_id IS NOT NULL;

CREATE TABLE msg_events_read (
    id VARCHAR(13) PRIMARY KEY,
    spec_version VARCHAR(20),
    type VARCHAR(200) NOT NULL,
    source VARCHAR(500) NOT NULL,
    subject VARCHAR(500),
    time {TS} NOT NULL,
    data TEXT,
    correlation_id VARCHAR(100),
    causation_id VARCHAR(100),
    deduplication_id VARCHAR(200),
    message_group VARCHAR(200),
    client_id VARCHAR(17),
    application VARCHAR(100),
    subdomain VARCHAR(100),
    aggregate VARCHAR(100),
    created_at {TS} NOT NULL,
    projected_at {TS} NOT NULL
);
CREATE INDEX idx_msg_events_read_time ON msg_events_read (time DESC, id DESC);
CREATE INDEX idx_msg_events_read_type ON msg_events_read (type, time DESC);
CREATE INDEX idx_msg_events_read_client ON msg_events_read (client_id, time DESC);
CREATE INDEX idx_msg_events_read_application ON msg_events_read (application);
CREATE INDEX idx_msg_events_read_correlation ON msg_events_read (correlation_id);

CREATE TABLE msg_dispatch_jobs (
    id VARCHAR(13) PRIMARY KEY,
    external_id VARCHAR(100),
    source VARCHAR(500),
    kind VARCHAR(20) NOT NULL DEFAULT 'EVENT',
    code VARCHAR(200) NOT NULL,
    subject VARCHAR(500),
    event_id VARCHAR(13),
    correlation_id VARCHAR(100),
    metadata {JSON},
    target_url VARCHAR(500) NOT NULL,
    protocol VARCHAR(30) NOT NULL DEFAULT 'HTTP_WEBHOOK',
    payload TEXT,
    payload_content_type VARCHAR(100) DEFAULT 'application/json',
    data_only {BOOL} NOT NULL DEFAULT {TRUE},
    service_account_id VARCHAR(17),
    client_id VARCHAR(17),
    subscription_id VARCHAR(17),
    connection_id VARCHAR(17),
    mode VARCHAR(30) NOT NULL DEFAULT 'IMMEDIATE',
    dispatch_pool_id VARCHAR(17),
    message_group VARCHAR(200),
    -- the line a job waits in: subscription and message group, for the ordered modes only
    -- (NULL: the job is not ordered). Scoped by subscription, so one subscriber's failure
    -- never holds another's jobs (spec §10.2).
    group_key VARCHAR(420),
    sequence INTEGER NOT NULL DEFAULT 99,
    timeout_seconds INTEGER NOT NULL DEFAULT 30,
    schema_id VARCHAR(17),
    status VARCHAR(20) NOT NULL DEFAULT 'PENDING',
    max_retries INTEGER NOT NULL DEFAULT 3,
    retry_strategy VARCHAR(50) DEFAULT 'exponential',
    scheduled_for {TS},
    expires_at {TS},
    attempt_count INTEGER NOT NULL DEFAULT 0,
    last_attempt_at {TS},
    completed_at {TS},
    duration_millis BIGINT,
    last_error TEXT,
    idempotency_key VARCHAR(100),
    queued_at {TS},
    projected_at {TS},             -- NULL whenever the row changed since the read model saw it
    created_at {TS} NOT NULL,
    updated_at {TS} NOT NULL
);
CREATE INDEX idx_dispatch_jobs_pending ON msg_dispatch_jobs (created_at, id) WHERE status = 'PENDING';
CREATE INDEX idx_dispatch_jobs_groups ON msg_dispatch_jobs (group_key, status)
    WHERE group_key IS NOT NULL AND status IN ('PENDING', 'QUEUED', 'PROCESSING', 'FAILED');
CREATE INDEX idx_dispatch_jobs_queued ON msg_dispatch_jobs (updated_at) WHERE status = 'QUEUED';
CREATE INDEX idx_dispatch_jobs_processing ON msg_dispatch_jobs (last_attempt_at) WHERE status = 'PROCESSING';
CREATE INDEX idx_dispatch_jobs_unprojected ON msg_dispatch_jobs (created_at) WHERE projected_at IS NULL;
CREATE INDEX idx_dispatch_jobs_event ON msg_dispatch_jobs (event_id);
-- fan-out never makes two jobs for one (event, subscription), however often it runs
CREATE UNIQUE INDEX idx_dispatch_jobs_idempotency ON msg_dispatch_jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE msg_dispatch_jobs_read (
    id VARCHAR(13) PRIMARY KEY,
    external_id VARCHAR(100),
    source VARCHAR(500),
    kind VARCHAR(20) NOT NULL,
    code VARCHAR(200) NOT NULL,
    subject VARCHAR(500),
    event_id VARCHAR(13),
    correlation_id VARCHAR(100),
    target_url VARCHAR(500) NOT NULL,
    protocol VARCHAR(30) NOT NULL,
    service_account_id VARCHAR(17),
    client_id VARCHAR(17),
    subscription_id VARCHAR(17),
    connection_id VARCHAR(17),
    dispatch_pool_id VARCHAR(17),
    mode VARCHAR(30) NOT NULL,
    message_group VARCHAR(200),
    sequence INTEGER NOT NULL,
    status VARCHAR(20) NOT NULL,
    attempt_count INTEGER NOT NULL,
    max_retries INTEGER NOT NULL,
    last_error TEXT,
    timeout_seconds INTEGER NOT NULL,
    retry_strategy VARCHAR(50),
    scheduled_for {TS},
    expires_at {TS},
    completed_at {TS},
    last_attempt_at {TS},
    duration_millis BIGINT,
    idempotency_key VARCHAR(100),
    is_completed {BOOL} NOT NULL,
    is_terminal {BOOL} NOT NULL,
    application VARCHAR(100),
    subdomain VARCHAR(100),
    aggregate VARCHAR(100),
    created_at {TS} NOT NULL,
    updated_at {TS} NOT NULL,
    projected_at {TS} NOT NULL
);
CREATE INDEX idx_dispatch_jobs_read_created ON msg_dispatch_jobs_read (created_at DESC, id DESC);
CREATE INDEX idx_dispatch_jobs_read_status ON msg_dispatch_jobs_read (status, created_at DESC);
CREATE INDEX idx_dispatch_jobs_read_client ON msg_dispatch_jobs_read (client_id, created_at DESC);
CREATE INDEX idx_dispatch_jobs_read_subscription ON msg_dispatch_jobs_read (subscription_id);
CREATE INDEX idx_dispatch_jobs_read_event ON msg_dispatch_jobs_read (event_id);
CREATE INDEX idx_dispatch_jobs_read_code ON msg_dispatch_jobs_read (code);
CREATE INDEX idx_dispatch_jobs_read_group ON msg_dispatch_jobs_read (message_group);

CREATE TABLE msg_dispatch_job_attempts (
    id VARCHAR(13) PRIMARY KEY,
    dispatch_job_id VARCHAR(13) NOT NULL,
    attempt_number INTEGER NOT NULL,
    status VARCHAR(20) NOT NULL,          -- SUCCESS | FAILED | DEFERRED (2xx ack:false or 429)
    response_code INTEGER,
    response_body TEXT,                   -- at most 64 KiB
    error_message TEXT,
    error_type VARCHAR(20),               -- CONNECTION | TIMEOUT | HTTP_ERROR | VALIDATION | UNKNOWN
    duration_millis BIGINT,
    attempted_at {TS} NOT NULL,
    completed_at {TS},
    created_at {TS} NOT NULL
);
CREATE INDEX idx_dispatch_job_attempts_job ON msg_dispatch_job_attempts (dispatch_job_id, attempt_number);

CREATE TABLE msg_subscriptions (
    id VARCHAR(17) PRIMARY KEY,
    code VARCHAR(100) NOT NULL,
    application_code VARCHAR(100),
    name VARCHAR(255) NOT NULL,
    description TEXT,
    client_id VARCHAR(17),
    client_identifier VARCHAR(100),
    client_scoped {BOOL} NOT NULL DEFAULT {FALSE},
    target VARCHAR(500) NOT NULL,
    connection_id VARCHAR(17),
    queue VARCHAR(255),
    source VARCHAR(20) NOT NULL DEFAULT 'API',
    status VARCHAR(20) NOT NULL DEFAULT 'ACTIVE',
    max_age_seconds INTEGER NOT NULL DEFAULT 86400,
    dispatch_pool_id VARCHAR(17),
    delay_seconds INTEGER NOT NULL DEFAULT 0,
    sequence INTEGER NOT NULL DEFAULT 99,
    mode VARCHAR(30) NOT NULL DEFAULT 'IMMEDIATE',
    timeout_seconds INTEGER NOT NULL DEFAULT 30,
    max_retries INTEGER NOT NULL DEFAULT 3,
    service_account_id VARCHAR(17),
    data_only {BOOL} NOT NULL DEFAULT {TRUE},
    signing_secret VARCHAR(200),          -- X-FLOWCATALYST-SIGNATURE key; NULL: unsigned
    standard_webhooks {BOOL} NOT NULL DEFAULT {FALSE},  -- also send webhook-id/-timestamp/-signature
    created_by VARCHAR(100),
    created_at {TS} NOT NULL,
    updated_at {TS} NOT NULL
);
CREATE UNIQUE INDEX idx_msg_subscriptions_code ON msg_subscriptions (code, COALESCE(client_id, ''));
CREATE INDEX idx_msg_subscriptions_status ON msg_subscriptions (status);
CREATE INDEX idx_msg_subscriptions_client ON msg_subscriptions (client_id);
CREATE INDEX idx_msg_subscriptions_pool ON msg_subscriptions (dispatch_pool_id);
CREATE INDEX idx_msg_subscriptions_connection ON msg_subscriptions (connection_id);

CREATE TABLE msg_subscription_event_types (
    id {ID},
    subscription_id VARCHAR(17) NOT NULL REFERENCES msg_subscriptions (id) ON DELETE CASCADE,
    event_type_id VARCHAR(17),
    event_type_code VARCHAR(255) NOT NULL,
    spec_version VARCHAR(20),
    filter TEXT
);
CREATE INDEX idx_msg_subscription_event_types_sub ON msg_subscription_event_types (subscription_id);

CREATE TABLE msg_subscription_custom_configs (
    id {ID},
    subscription_id VARCHAR(17) NOT NULL REFERENCES msg_subscriptions (id) ON DELETE CASCADE,
    config_key VARCHAR(100) NOT NULL,
    config_value VARCHAR(1000)
);
CREATE INDEX idx_msg_subscription_custom_configs_sub ON msg_subscription_custom_configs (subscription_id);

CREATE TABLE msg_dispatch_pools (
    id VARCHAR(17) PRIMARY KEY,
    code VARCHAR(100) NOT NULL,
    name VARCHAR(255) NOT NULL,
    description TEXT,
    rate_limit INTEGER,                   -- messages per minute; NULL: unlimited
    concurrency INTEGER NOT NULL DEFAULT 10,
    client_id VARCHAR(17),
    client_identifier VARCHAR(100),
    status VARCHAR(20) NOT NULL DEFAULT 'ACTIVE',
    created_at {TS} NOT NULL,
    updated_at {TS} NOT NULL
);
CREATE UNIQUE INDEX idx_msg_dispatch_pools_code ON msg_dispatch_pools (code, COALESCE(client_id, ''));

CREATE TABLE msg_connections (
    id VARCHAR(17) PRIMARY KEY,
    code VARCHAR(100) NOT NULL,
    name VARCHAR(255) NOT NULL,
    description TEXT,
    external_id VARCHAR(100),
    status VARCHAR(20) NOT NULL DEFAULT 'ACTIVE',
    service_account_id VARCHAR(17) NOT NULL,
    client_id VARCHAR(17),
    client_identifier VARCHAR(100),
    created_at {TS} NOT NULL,
    updated_at {TS} NOT NULL
);
CREATE UNIQUE INDEX idx_msg_connections_code ON msg_connections (code, COALESCE(client_id, ''));
CREATE INDEX idx_msg_connections_paused ON msg_connections (id) WHERE status = 'PAUSED';

CREATE TABLE msg_event_types (
    id VARCHAR(17) PRIMARY KEY,
    code VARCHAR(200) NOT NULL,
    name VARCHAR(255) NOT NULL,
    description TEXT,
    status VARCHAR(20) NOT NULL DEFAULT 'CURRENT',
    source VARCHAR(20) NOT NULL DEFAULT 'API',
    client_scoped {BOOL} NOT NULL DEFAULT {FALSE},
    application VARCHAR(100) NOT NULL,
    subdomain VARCHAR(100) NOT NULL,
    aggregate VARCHAR(100) NOT NULL,
    created_at {TS} NOT NULL,
    updated_at {TS} NOT NULL
);
CREATE UNIQUE INDEX idx_msg_event_types_code ON msg_event_types (code);

CREATE TABLE aud_logs (
    id VARCHAR(17) PRIMARY KEY,
    entity_type VARCHAR(100) NOT NULL,
    entity_id VARCHAR(100) NOT NULL,
    operation VARCHAR(100) NOT NULL,
    operation_json {JSON},
    principal_id VARCHAR(100),
    application_id VARCHAR(100),
    client_id VARCHAR(100),
    performed_at {TS} NOT NULL
);
CREATE INDEX idx_aud_logs_entity ON aud_logs (entity_type, entity_id);
CREATE INDEX idx_aud_logs_performed ON aud_logs (performed_at);
CREATE INDEX idx_aud_logs_principal ON aud_logs (principal_id);
CREATE INDEX idx_aud_logs_operation ON aud_logs (operation);
CREATE INDEX idx_aud_logs_client ON aud_logs (client_id);

-- Counters the processes share. `subscriptions` goes up with every change to a subscription,
-- in the same transaction: fan-out reloads its subscriptions when it moved (no TTL race,
-- spec §10.2).
CREATE TABLE fc_versions (
    name VARCHAR(50) PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO fc_versions (name, value) VALUES ('subscriptions', 0);
