-- 0005: receipts_by_text -- some SMSCs send delivery receipts as a plain deliver_sm: esm_class 0 and no
-- receipt TLVs.  With this set, the operator's inbound handler also takes a deliver_sm whose text reads as
-- a receipt (an id:, a stat: naming a state, and a sub:/dlvrd:/submit date:/done date:) for a receipt
-- instead of an MO.  Off by default: an MO whose text happens to read like that would be taken for one.
-- Adding a column with a constant default is instant and changes no existing operator's behaviour.
ALTER TABLE operators ADD COLUMN receipts_by_text boolean NOT NULL DEFAULT false;
