-- 0004: per-operator temporary command_statuses.  Vendor statuses (0x400-0x4FF, and any other the SMSC's
-- documentation lists as "try again") that the connector treats like ESME_RTHROTTLED / ESME_RMSGQFUL: the
-- message goes back to the queue with a growing delay instead of failing over or failing with a receipt.
-- Every other status that is not ESME_ROK or one of the standard temporary ones stays permanent.
-- Values are the command_status integers (0x401 is stored as 1025); ESME_ROK (0) and negatives are refused.
-- Adding a column with a constant default is instant; the CHECK reads the (small) operators table once.
ALTER TABLE operators ADD COLUMN temporary_statuses integer[] NOT NULL DEFAULT '{}'
    CHECK (CASE WHEN array_ndims(temporary_statuses) IS NULL THEN true          -- '{}'
                WHEN array_ndims(temporary_statuses) = 1
                THEN 0 < ALL (temporary_statuses) AND array_position(temporary_statuses, NULL) IS NULL
                ELSE false END);
