-- 0002: MO routes: a mobile-originated message is routed by its destination (short code / long number),
-- optionally filtered by its source, to a partner.  Longest dest_prefix wins, then priority.
CREATE TABLE mo_routes (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dest_prefix   text NOT NULL DEFAULT '' CHECK (dest_prefix ~ '^[0-9]*$'),
    source_prefix text NOT NULL DEFAULT '' CHECK (source_prefix ~ '^[0-9]*$'),
    partner_id    bigint NOT NULL REFERENCES partners (id) ON DELETE CASCADE,
    priority      integer NOT NULL DEFAULT 0,
    enabled       boolean NOT NULL DEFAULT true,
    description   text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mo_routes_partner ON mo_routes (partner_id);

CREATE TRIGGER mo_routes_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mo_routes
    FOR EACH STATEMENT EXECUTE FUNCTION catalyst_config_changed();
