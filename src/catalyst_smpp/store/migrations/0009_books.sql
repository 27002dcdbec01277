-- 0009: the books: billing accounts, the ledger, per-message credit entries and credit leases
-- (docs/dev/billing.md).  Kept by catalyst_smpp.billing.books; nothing here depends on the plan tables.

-- A partner's account: one currency, its balance (the running sum of its ledger).  The account row is the
-- lock every change to the partner's credit takes (SELECT ... FOR UPDATE), so grants never overdraw.
-- unleased_open: what holds taken against no (known) lease still hold unsettled, kept with the balance so
-- that available credit is read without summing the partner's history.
CREATE TABLE billing_accounts (
    partner_id    bigint PRIMARY KEY REFERENCES partners (id),      -- a partner with books is not deleted
    currency      char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    mode          text NOT NULL DEFAULT 'prepaid' CHECK (mode IN ('prepaid', 'credit')),
    credit_limit  numeric(20,6) NOT NULL DEFAULT 0 CHECK (credit_limit >= 0),  -- counted in 'credit' mode
    low_balance   numeric(20,6),
    balance       numeric(20,6) NOT NULL DEFAULT 0,
    unleased_open numeric(20,6) NOT NULL DEFAULT 0 CHECK (unleased_open >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (partner_id, currency)                                  -- target of the (partner, currency) keys
);

-- Rows are only ever appended (triggers below refuse UPDATE, DELETE and TRUNCATE).
CREATE FUNCTION books_append_only() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TABLE ledger (
    id            bigserial PRIMARY KEY,
    partner_id    bigint NOT NULL,
    at            timestamptz NOT NULL DEFAULT now(),
    kind          text NOT NULL CHECK (kind IN ('topup', 'adjustment', 'charge')),
    amount        numeric(20,6) NOT NULL,
    currency      char(3) NOT NULL,
    balance_after numeric(20,6) NOT NULL,
    message_id    text,
    reason        text,
    actor         text,
    -- (partner_id, currency) is an account's: every writer inserts from a join with billing_accounts (no
    -- foreign key: its per-row check cost a fifth of the books' write time; accounts are never deleted and
    -- never change currency, see the trigger below), and verify() checks it
    CHECK (kind <> 'topup' OR amount > 0),
    CHECK (kind <> 'adjustment' OR amount <> 0),
    CHECK (kind <> 'charge' OR (amount <= 0 AND message_id IS NOT NULL)),
    CHECK (kind = 'charge' OR (btrim(coalesce(reason, '')) <> '' AND btrim(coalesce(actor, '')) <> ''))
);
CREATE UNIQUE INDEX ledger_message ON ledger (message_id, kind) WHERE message_id IS NOT NULL;
CREATE INDEX ledger_partner_at ON ledger (partner_id, at);
CREATE INDEX ledger_partner_id ON ledger (partner_id, id);
CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION books_append_only();
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION books_append_only();

-- A node's block of a partner's credit.  held / settled: the sum of the holds recorded against it and of
-- those of them settled (H and S of the committed formula), kept by apply_credit with the entries.
-- lapses_at = expires_at + the lapse grace at grant time: past it an unreturned lease counts only H - S.
CREATE TABLE credit_leases (
    id          bigserial PRIMARY KEY,
    partner_id  bigint NOT NULL REFERENCES billing_accounts (partner_id),
    node        text NOT NULL CHECK (node <> ''),
    amount      numeric(20,6) NOT NULL CHECK (amount > 0),
    used        numeric(20,6) CHECK (used >= 0),
    held        numeric(20,6) NOT NULL DEFAULT 0 CHECK (held >= 0),
    settled     numeric(20,6) NOT NULL DEFAULT 0 CHECK (settled >= 0),
    granted_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    lapses_at   timestamptz NOT NULL,
    state       text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'returned')),
    closed_at   timestamptz,
    CHECK (lapses_at >= expires_at AND expires_at >= granted_at),
    CHECK ((state = 'open') = (used IS NULL AND closed_at IS NULL))
);
-- The leases that still commit credit (the predicate is repeated in the queries that use the index).
CREATE INDEX credit_leases_live ON credit_leases (partner_id)
    WHERE state = 'open' OR held > settled OR used > settled;

CREATE TABLE credit_entries (
    message_id text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('hold', 'capture', 'release')),
    partner_id bigint NOT NULL,
    amount     numeric(20,6) NOT NULL CHECK (amount >= 0),
    currency   char(3) NOT NULL,
    lease_id   bigint,
    at         timestamptz NOT NULL,
    PRIMARY KEY (message_id, kind)
    -- (partner_id, currency) is an account's: apply_credit inserts from a join with billing_accounts (no
    -- foreign key, as for the ledger)
);
-- The first of capture / release settles the message: a later one of the other kind conflicts here.
CREATE UNIQUE INDEX credit_entries_one_settlement ON credit_entries (message_id) WHERE kind <> 'hold';
-- No index on lease_id: the per-lease totals are kept as counters on credit_leases (apply_credit), so only
-- verify() reads entries by lease, all of them at once; an index would cost every entry an insert.
CREATE INDEX credit_entries_partner_at ON credit_entries (partner_id, at);
CREATE TRIGGER credit_entries_append_only BEFORE UPDATE OR DELETE ON credit_entries
    FOR EACH ROW EXECUTE FUNCTION books_append_only();
CREATE TRIGGER credit_entries_no_truncate BEFORE TRUNCATE ON credit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION books_append_only();

-- What the missing foreign keys of ledger and credit_entries would have kept: an account is never deleted and
-- its currency never changes.
CREATE FUNCTION books_account_fixed() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.currency IS DISTINCT FROM OLD.currency OR NEW.partner_id <> OLD.partner_id THEN
        RAISE EXCEPTION 'billing account of partner %: % of its identity or currency refused', OLD.partner_id, TG_OP
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER billing_accounts_fixed BEFORE UPDATE OF partner_id, currency OR DELETE ON billing_accounts
    FOR EACH ROW EXECUTE FUNCTION books_account_fixed();
CREATE TRIGGER billing_accounts_no_truncate BEFORE TRUNCATE ON billing_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION books_append_only();
