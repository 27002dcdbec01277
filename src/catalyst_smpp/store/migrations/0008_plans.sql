-- 0008: price and cost plans (docs/dev/billing.md), the partners' billing settings, operators' cost plans, and
-- the 'least_cost' route strategy.
--
-- A plan (kind 'price': what partners pay; 'cost': what operators charge us) has rows: a destination prefix,
-- the per-part submit and delivery prices, and the window [effective_from, effective_until) the row applies in
-- (until NULL: open).  Two rows of one plan must never match the same prefix at the same instant, or a lookup
-- could not choose.  That rule is a constraint trigger here, not an exclusion constraint: an exclusion
-- constraint on (plan_id, prefix, range) needs the btree_gist extension, which needs CREATE on the database
-- (a gateway's role often only owns its schema) and lives in one schema of a database shared by several
-- (dropping that schema would drop the constraint everywhere).  Rows are written only by a plan import
-- (store/plan_repo.py), which checks the whole file first (naming its lines) and locks the plan row, so
-- imports of one plan never interleave; the trigger is the backstop for any other writer.
--
-- Changes to plans and plan_rows bump config_version and NOTIFY like routes, so running gateways reload.
-- A partner's price plan must be a 'price' plan, an operator's cost plan a 'cost' plan (trigger below; the
-- repositories say so first in plainer words).  All new partner/operator columns have constant defaults:
-- adding them is instant and changes nothing for existing partners (no price plan = not billed).

CREATE TABLE plans (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
    kind        text NOT NULL CHECK (kind IN ('price', 'cost')),
    currency    char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE plan_rows (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plan_id         bigint NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    prefix          text NOT NULL CHECK (prefix ~ '^[0-9]{1,32}$'),
    country         text NOT NULL CHECK (country ~ '^[0-9]{1,4}$'),
    network         text NOT NULL DEFAULT '' CHECK (length(network) <= 64),
    mcc_mnc         text CHECK (mcc_mnc ~ '^[0-9]{5,6}$'),
    submit_price    numeric(20, 6) NOT NULL CHECK (submit_price >= 0),
    delivery_price  numeric(20, 6) CHECK (delivery_price >= 0),
    effective_from  timestamptz NOT NULL,
    effective_until timestamptz,
    CHECK (effective_until > effective_from)
);
CREATE INDEX plan_rows_lookup ON plan_rows (plan_id, prefix, effective_from);

CREATE FUNCTION catalyst_plan_rows_overlap() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    clash record;
BEGIN
    SELECT n.plan_id, n.prefix, n.effective_from AS a, o.effective_from AS b INTO clash
    FROM plan_rows_new n
    JOIN plan_rows o ON o.plan_id = n.plan_id AND o.prefix = n.prefix AND o.id <> n.id
    WHERE o.effective_from < coalesce(n.effective_until, 'infinity')
      AND n.effective_from < coalesce(o.effective_until, 'infinity')
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'plan % has two rows for prefix % at the same instant (from % and from %)',
            clash.plan_id, clash.prefix, clash.a, clash.b
            USING ERRCODE = 'exclusion_violation', CONSTRAINT = 'plan_rows_no_overlap';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER plan_rows_no_overlap_insert AFTER INSERT ON plan_rows
    REFERENCING NEW TABLE AS plan_rows_new
    FOR EACH STATEMENT EXECUTE FUNCTION catalyst_plan_rows_overlap();
CREATE TRIGGER plan_rows_no_overlap_update AFTER UPDATE ON plan_rows
    REFERENCING NEW TABLE AS plan_rows_new
    FOR EACH STATEMENT EXECUTE FUNCTION catalyst_plan_rows_overlap();

CREATE TRIGGER plans_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON plans
    FOR EACH STATEMENT EXECUTE FUNCTION catalyst_config_changed();
CREATE TRIGGER plan_rows_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON plan_rows
    FOR EACH STATEMENT EXECUTE FUNCTION catalyst_config_changed();

-- insufficient_credit_status: the command_status a submit the partner cannot pay for is refused with
-- (default 0x45 ESME_RSUBMITFAIL); bigint so that any 32-bit status 0x1..0xFFFFFFFF fits.
ALTER TABLE partners
    ADD COLUMN price_plan_id bigint REFERENCES plans (id) ON DELETE RESTRICT,
    ADD COLUMN charge_on text NOT NULL DEFAULT 'submit' CHECK (charge_on IN ('submit', 'delivery')),
    ADD COLUMN insufficient_credit_status bigint NOT NULL DEFAULT 69
        CHECK (insufficient_credit_status BETWEEN 1 AND 4294967295),
    ADD COLUMN margin_guard boolean NOT NULL DEFAULT false;
CREATE INDEX partners_price_plan ON partners (price_plan_id) WHERE price_plan_id IS NOT NULL;

ALTER TABLE operators ADD COLUMN cost_plan_id bigint REFERENCES plans (id) ON DELETE RESTRICT;
CREATE INDEX operators_cost_plan ON operators (cost_plan_id) WHERE cost_plan_id IS NOT NULL;

-- A plan of the wrong kind assigned, or a plan's kind changed while it is assigned: check_violation.
CREATE FUNCTION catalyst_plan_kind_check() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF TG_TABLE_NAME = 'partners' THEN
        IF NEW.price_plan_id IS NOT NULL
           AND EXISTS (SELECT 1 FROM plans WHERE id = NEW.price_plan_id AND kind <> 'price') THEN
            RAISE EXCEPTION 'a partner''s price plan must be a price plan'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'partners_price_plan_kind';
        END IF;
    ELSIF TG_TABLE_NAME = 'operators' THEN
        IF NEW.cost_plan_id IS NOT NULL
           AND EXISTS (SELECT 1 FROM plans WHERE id = NEW.cost_plan_id AND kind <> 'cost') THEN
            RAISE EXCEPTION 'an operator''s cost plan must be a cost plan'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'operators_cost_plan_kind';
        END IF;
    ELSIF NEW.kind <> OLD.kind
          AND (EXISTS (SELECT 1 FROM partners WHERE price_plan_id = NEW.id)
               OR EXISTS (SELECT 1 FROM operators WHERE cost_plan_id = NEW.id)) THEN
        RAISE EXCEPTION 'plan % is assigned: its kind cannot change', NEW.name
            USING ERRCODE = 'check_violation', CONSTRAINT = 'plans_kind_assigned';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER partners_price_plan_kind BEFORE INSERT OR UPDATE OF price_plan_id ON partners
    FOR EACH ROW EXECUTE FUNCTION catalyst_plan_kind_check();
CREATE TRIGGER operators_cost_plan_kind BEFORE INSERT OR UPDATE OF cost_plan_id ON operators
    FOR EACH ROW EXECUTE FUNCTION catalyst_plan_kind_check();
CREATE TRIGGER plans_kind_assigned BEFORE UPDATE OF kind ON plans
    FOR EACH ROW EXECUTE FUNCTION catalyst_plan_kind_check();

ALTER TABLE routes DROP CONSTRAINT routes_strategy_check;
ALTER TABLE routes ADD CONSTRAINT routes_strategy_check
    CHECK (strategy IN ('failover', 'weighted', 'least_cost'));
