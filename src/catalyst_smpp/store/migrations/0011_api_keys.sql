-- 0011: API keys of the HTTP API (catalyst_smpp.http.keys; docs/operations.md "HTTP API").
--
-- A key is "ck_<prefix>_<secret>": the prefix (8 characters) is shown in lists and finds the row, the secret
-- (256 random bits) is kept only as its SHA-256 (a random 256-bit secret needs no slow hash).  The key itself
-- is shown once, when it is made.  A revoked key keeps its row (revoked_at) for the record.
CREATE TABLE api_keys (
    id           bigserial PRIMARY KEY,
    partner_id   bigint NOT NULL REFERENCES partners (id) ON DELETE CASCADE,
    name         text NOT NULL DEFAULT '',
    prefix       text NOT NULL UNIQUE CHECK (prefix ~ '^[A-Za-z0-9]{8}$'),
    hash         bytea NOT NULL CHECK (octet_length(hash) = 32),
    rate         double precision CHECK (rate > 0),                 -- requests per second; NULL: [http] rate
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,                                        -- updated at most once per key_cache
    revoked_at   timestamptz
);

CREATE INDEX api_keys_partner ON api_keys (partner_id);
