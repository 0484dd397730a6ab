-- Subscriptions: webhooks that tell a consumer a dataset has a new version. `secrets` holds the
-- signing secret and the subscriber's API token, sealed with the key outside the catalogue.
-- `last_version` is the newest version deliveries have been made for; a delivery is one
-- version's event to one subscription, retried until it is delivered or given up.

CREATE TABLE subscriptions (
    id            TEXT PRIMARY KEY,
    org           TEXT NOT NULL,
    dataset       TEXT NOT NULL,
    url           TEXT NOT NULL,
    subscriber    TEXT NOT NULL,
    purpose       TEXT,
    secrets       TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    last_version  BIGINT NOT NULL
);

CREATE INDEX subscriptions_dataset ON subscriptions (org, dataset);

CREATE TABLE subscription_deliveries (
    id              TEXT PRIMARY KEY,
    subscription    TEXT NOT NULL,
    version         BIGINT NOT NULL,
    created_at      TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    last_status     BIGINT,
    last_error      TEXT,
    delivered_at    TEXT,
    lease_owner     TEXT,
    lease_until     TEXT,
    UNIQUE (subscription, version)
);

CREATE INDEX subscription_deliveries_due ON subscription_deliveries (state, next_attempt_at);
