-- 0014: partners' webhooks: receipts ('dlr') and MO messages ('mo') POSTed to the partner's URL, signed with
-- its secret (docs/operations.md "Webhooks").  One webhook per partner and kind.  A partner with an enabled
-- 'dlr' webhook gets its receipts only by webhook (its SMPP binds get MO only), likewise for 'mo'.
-- Changes bump config_version and NOTIFY like partners, so running gateways start or stop the delivery.
CREATE TABLE webhooks (
    partner_id bigint NOT NULL REFERENCES partners (id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('dlr', 'mo')),
    url        text NOT NULL CHECK (url ~ '^https?://[^[:space:]]+$' AND length(url) <= 2048),
    secret     text NOT NULL CHECK (length(secret) BETWEEN 16 AND 256),
    enabled    boolean NOT NULL DEFAULT true,
    batch_size integer NOT NULL DEFAULT 100 CHECK (batch_size BETWEEN 1 AND 1000),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner_id, kind)
);

CREATE TRIGGER webhooks_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON webhooks
    FOR EACH STATEMENT EXECUTE FUNCTION catalyst_config_changed();
