-- 0010: the CDR columns of the message log, and the cdrs view.
--
-- Every row of a billed message carries what the partner pays (price, currency), what the operator charges us
-- (cost, cost_currency), the credit lease the price was held against and what the row did to the hold
-- (charge_state: held, captured, released).  Amounts are stored as exact integers of micro-units (what the
-- writer copies without conversion); the cdrs view shows them as decimals.  NULL: a partner that is not billed.
ALTER TABLE message_log
    ADD COLUMN price         bigint,
    ADD COLUMN currency      text,
    ADD COLUMN cost          bigint,
    ADD COLUMN cost_currency text,
    ADD COLUMN lease_id      bigint,
    ADD COLUMN charge_state  text CHECK (charge_state IN ('held', 'captured', 'released'));

CREATE VIEW cdrs AS
SELECT message_id, event, event_at, partner, operator, source_addr, dest_addr, parts, status, final_state,
       error, operator_message_id, node, display_id,
       price::numeric / 1000000 AS price, currency,
       cost::numeric / 1000000 AS cost, cost_currency,
       lease_id, charge_state
FROM message_log;
