-- 0013: the HTTP API's Idempotency-Key store (catalyst_smpp/http/idempotency.py).  One row per (partner, key):
-- 'pending' while the first request runs, 'done' with the answer it got (replayed for 24 hours to a retry with
-- the same body).  In Postgres so that a retry reaching another node finds it.
CREATE TABLE idempotency_keys (
    partner      text NOT NULL,
    key          text NOT NULL,
    request_hash text NOT NULL,
    state        text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
    http_status  integer,
    response     jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
