-- 0001: partners, operators, routes, message log, and the config change counter.
-- Applied in one transaction by catalyst_smpp.store.migrate (unqualified names: the connection's search_path).

-- One row: bumped by a trigger on every change to partners/operators/routes/route_operators, and announced
-- with NOTIFY catalyst_config '<schema>:<table>:<version>' so running gateways reload without a restart.
CREATE TABLE config_version (
    id      boolean PRIMARY KEY DEFAULT true CHECK (id),
    version bigint  NOT NULL DEFAULT 0
);
INSERT INTO config_version (id, version) VALUES (true, 0);

CREATE FUNCTION catalyst_config_changed() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    v bigint;
BEGIN
    UPDATE config_version SET version = version + 1 RETURNING version INTO v;
    PERFORM pg_notify('catalyst_config', current_schema() || ':' || TG_TABLE_NAME || ':' || v);
    RETURN NULL;
END
$$;

CREATE TABLE partners (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    system_id           text NOT NULL UNIQUE CHECK (length(system_id) BETWEEN 1 AND 15),
    password_hash       text NOT NULL,
    allowed_ips         cidr[] NOT NULL DEFAULT '{}',          -- empty: any address
    max_binds           integer NOT NULL DEFAULT 4 CHECK (max_binds >= 1),
    throttle_rate       double precision NOT NULL DEFAULT 100 CHECK (throttle_rate > 0),
    throttle_burst      integer NOT NULL DEFAULT 100 CHECK (throttle_burst >= 1),
    window_size         integer NOT NULL DEFAULT 10 CHECK (window_size >= 1),
    message_id_format   text NOT NULL DEFAULT 'hex' CHECK (message_id_format IN ('hex', 'dec')),
    data_coding_0       text NOT NULL DEFAULT 'gsm7' CHECK (data_coding_0 IN ('gsm7', 'latin1', 'ascii')),
    receipt_date_digits smallint NOT NULL DEFAULT 10 CHECK (receipt_date_digits IN (10, 12)),
    enabled             boolean NOT NULL DEFAULT true,
    description         text NOT NULL DEFAULT '',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE operators (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name              text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
    host              text NOT NULL CHECK (host <> ''),
    port              integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    tls               boolean NOT NULL DEFAULT false,
    system_id         text NOT NULL CHECK (length(system_id) BETWEEN 1 AND 15),
    password          text NOT NULL DEFAULT '',                -- needed in clear to bind to the SMSC
    system_type       text NOT NULL DEFAULT '' CHECK (length(system_type) <= 12),
    bind_type         text NOT NULL DEFAULT 'transceiver'
                      CHECK (bind_type IN ('transceiver', 'transmitter', 'receiver', 'tx_rx')),
    bind_count        integer NOT NULL DEFAULT 1 CHECK (bind_count >= 1),
    window_size       integer NOT NULL DEFAULT 10 CHECK (window_size >= 1),
    tps               double precision NOT NULL DEFAULT 100 CHECK (tps > 0),
    data_coding_0     text NOT NULL DEFAULT 'gsm7' CHECK (data_coding_0 IN ('gsm7', 'latin1', 'ascii')),
    segmentation      text NOT NULL DEFAULT 'udh8' CHECK (segmentation IN ('udh8', 'udh16', 'sar', 'payload')),
    submit_id_format  text NOT NULL DEFAULT 'text' CHECK (submit_id_format IN ('text', 'hex', 'dec')),
    receipt_id_format text NOT NULL DEFAULT 'text' CHECK (receipt_id_format IN ('text', 'hex', 'dec')),
    enabled           boolean NOT NULL DEFAULT true,
    description       text NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE routes (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partner_id    bigint REFERENCES partners (id) ON DELETE CASCADE,   -- NULL: any partner
    dest_prefix   text NOT NULL DEFAULT '' CHECK (dest_prefix ~ '^[0-9]*$'),
    source_prefix text,
    source_regex  text,
    priority      integer NOT NULL DEFAULT 0,
    strategy      text NOT NULL DEFAULT 'failover' CHECK (strategy IN ('failover', 'weighted')),
    enabled       boolean NOT NULL DEFAULT true,
    description   text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (source_prefix IS NULL OR source_regex IS NULL)
);
CREATE INDEX routes_partner ON routes (partner_id);

CREATE TABLE route_operators (
    route_id    bigint NOT NULL REFERENCES routes (id) ON DELETE CASCADE,
    operator_id bigint NOT NULL REFERENCES operators (id) ON DELETE RESTRICT,
    position    integer NOT NULL CHECK (position >= 0),
    weight      integer NOT NULL DEFAULT 1 CHECK (weight >= 0),
    PRIMARY KEY (route_id, operator_id),
    UNIQUE (route_id, position)
);
CREATE INDEX route_operators_operator ON route_operators (operator_id);

CREATE TRIGGER partners_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON partners
    FOR EACH STATEMENT EXECUTE FUNCTION catalyst_config_changed();
CREATE TRIGGER operators_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON operators
    FOR EACH STATEMENT EXECUTE FUNCTION catalyst_config_changed();
CREATE TRIGGER routes_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON routes
    FOR EACH STATEMENT EXECUTE FUNCTION catalyst_config_changed();
CREATE TRIGGER route_operators_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON route_operators
    FOR EACH STATEMENT EXECUTE FUNCTION catalyst_config_changed();

-- One row per (message, event): accepted, submitted, delivered, failed, expired, ... Written in batches
-- (COPY into a temporary table, then INSERT ... ON CONFLICT DO NOTHING), so replays are harmless.
CREATE TABLE message_log (
    message_id          text NOT NULL,
    event               text NOT NULL,
    event_at            timestamptz NOT NULL,
    partner             text NOT NULL DEFAULT '',
    operator            text NOT NULL DEFAULT '',
    source_addr         text NOT NULL DEFAULT '',
    dest_addr           text NOT NULL DEFAULT '',
    parts               smallint NOT NULL DEFAULT 1,
    status              integer,                 -- SMPP command_status (ours or the operator's)
    final_state         text,                    -- DELIVRD, UNDELIV, EXPIRED, REJECTD, ...
    error               text,
    operator_message_id text,
    node                text NOT NULL DEFAULT '',
    logged_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, event)
);
CREATE INDEX message_log_event_at ON message_log USING brin (event_at);
