-- 0003: the id a partner was given when it is not the message's own id (submit_multi: one id of ours per
-- destination, the partner gets the first destination's id for all of them).  Set on the 'accepted' row of
-- every destination of a submit_multi (the first one's too) and on the other rows of the destinations after
-- the first; NULL otherwise.  query_sm with a submit_multi id finds all its destinations through it.
-- Adding a nullable column without a default is instant; the partial index holds only submit_multi rows
-- (building it still reads the table once, holding writes to message_log meanwhile).
ALTER TABLE message_log ADD COLUMN display_id text;
CREATE INDEX message_log_display_id ON message_log (display_id) WHERE display_id IS NOT NULL;
