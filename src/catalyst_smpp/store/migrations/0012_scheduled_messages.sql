-- 0012: scheduled sends.  A message whose schedule_delivery_time is in the future is kept here (its MT record's
-- octets, ready to publish) instead of in MT, until a node's Scheduler releases it (publish, then 'sent') or it
-- expires ('expired'), is cancelled by cancel_sm / the HTTP API ('cancelled') or replaced (record and times
-- rewritten in place).  No timer per message in memory: every node polls the due rows (FOR UPDATE SKIP LOCKED).
CREATE TABLE scheduled_messages (
    message_id   text PRIMARY KEY,                 -- our id, canonical (decimal)
    partner      text NOT NULL,
    display_id   text NOT NULL,                    -- the id the partner was given (submit_multi: the first's)
    source_addr  text NOT NULL DEFAULT '',         -- cancel_sm by source/destination (SMPP v3.4 section 4.9)
    dest_addr    text NOT NULL DEFAULT '',
    service_type text NOT NULL DEFAULT '',
    due_at       timestamptz NOT NULL,
    expires_at   timestamptz,                      -- NULL: no validity period
    subject      text NOT NULL,                    -- MT.<first target> at accept
    record       bytea NOT NULL,                   -- the MtMessage record (gateway/messages.py)
    state        text NOT NULL DEFAULT 'waiting'
                 CHECK (state IN ('waiting', 'sent', 'cancelled', 'expired')),
    logged       boolean NOT NULL DEFAULT true,    -- false: cancelled, its 'cancelled' log row not stored yet
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
-- what the Scheduler polls: the waiting rows by the earlier of due and expiry (the query uses this expression)
CREATE INDEX scheduled_messages_next ON scheduled_messages ((LEAST(due_at, COALESCE(expires_at, due_at))))
    WHERE state = 'waiting';
CREATE INDEX scheduled_messages_display ON scheduled_messages (partner, display_id);
CREATE INDEX scheduled_messages_unlogged ON scheduled_messages (updated_at) WHERE NOT logged;
CREATE INDEX scheduled_messages_done ON scheduled_messages (updated_at) WHERE state <> 'waiting';
