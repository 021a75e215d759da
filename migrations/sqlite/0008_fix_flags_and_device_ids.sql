-- Plausibility flags of a position (ingest::validate), and device ids in their canonical form
-- (identity.rs).

-- 1 when the fix time was further ahead of its receipt than `ingest.max_fix_ahead`.
ALTER TABLE positions ADD COLUMN clock_skew INTEGER NOT NULL DEFAULT 0;
-- Why the position cannot be believed, with the values as sent; NULL for a plausible one.
ALTER TABLE positions ADD COLUMN implausible TEXT;

-- A number typed with leading zeros (`0864...`, `013912345678`) names the same device as the
-- number without them, which is what trackers send. Rows whose canonical form is already
-- taken are left as they are: such a binding never matched its device anyway, and merging two
-- bindings silently could move a wristband to another person. Positions keep the id they were
-- stored with; the audit record is not rewritten.
UPDATE OR IGNORE devices
SET imei = ltrim(imei, '0')
WHERE imei GLOB '0*'
  AND imei NOT GLOB '*[^0-9]*'
  AND ltrim(imei, '0') <> '';
